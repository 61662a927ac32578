"""moto's S3 server on a free loopback port, in its own process group."""

from __future__ import annotations

import sys

from .processes import free_port, start_process, stop_process, wait_for_http


class MotoServer:
    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = start_process(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open("/dev/null", "wb"),
            stderr=open("/dev/null", "wb"),
        )
        wait_for_http(f"{self.endpoint}/moto-api/", self.process)

    def client(self, access_key="testing", secret_key="testing"):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

    def stop(self):
        stop_process(self.process)
