"""pg_dump's output read as text in the encoding it declares."""

from __future__ import annotations

import re

_ENCODING = re.compile(r"^SET client_encoding = '([^']+)';$", re.MULTILINE)
# PostgreSQL's encoding names where Python's differ; SQL_ASCII's bytes have no declared encoding, and LATIN1
# reads each byte as one character, so nothing is lost and equal bytes compare equal.
_PYTHON_CODECS = {
    "SQL_ASCII": "latin-1",
    "LATIN1": "latin-1",
    "UTF8": "utf-8",
    "EUC_JP": "euc_jp",
    "EUC_CN": "gb2312",
    "EUC_KR": "euc_kr",
    "SJIS": "shift_jis",
    "BIG5": "big5",
    "GBK": "gbk",
    "UHC": "cp949",
    "GB18030": "gb18030",
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
    "ISO_8859_5": "iso8859_5",
    "ISO_8859_6": "iso8859_6",
    "ISO_8859_7": "iso8859_7",
    "ISO_8859_8": "iso8859_8",
    **{f"LATIN{n}": f"iso8859_{m}" for n, m in ((2, 2), (3, 3), (4, 4), (5, 9), (6, 10), (7, 13), (8, 14))},
    "LATIN9": "iso8859_15",
    "LATIN10": "iso8859_16",
    **{f"WIN{n}": f"cp{n}" for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258)},
}


def decode_dump(sql: bytes) -> str:
    """pg_dump's output as text, read in the encoding it declares (its `SET client_encoding`)."""
    declared = _ENCODING.search(sql[:4096].decode("ascii", "replace"))
    codec = _PYTHON_CODECS.get(declared.group(1).upper() if declared else "UTF8", "utf-8")
    return sql.decode(codec, errors="replace")
