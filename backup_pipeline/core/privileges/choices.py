"""How a restore treats the backup's owners and privileges: leave them out, rename roles, or create the
missing ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.privileges.recorded import DATABASE_GRANTEE, DATABASE_OWNER, GRANTEE, OWNER, SETTING

_OWNER_USES = frozenset({OWNER, DATABASE_OWNER})
_ACL_USES = frozenset({GRANTEE, DATABASE_GRANTEE})


@dataclass(frozen=True)
class PrivilegeChoices:
    """How a restore treats owners and privileges: skip them, rename roles, or create missing roles."""

    no_owner: bool = False
    no_acl: bool = False
    role_map: dict[str, str] = field(default_factory=dict)
    create_roles: bool = False

    @classmethod
    def parse(
        cls, no_owner: bool = False, no_acl: bool = False, role_map=(), create_roles: bool = False
    ) -> PrivilegeChoices:
        return cls(no_owner, no_acl, parse_role_map(role_map), create_roles)

    def skips(self, uses) -> bool:
        """Whether every use of a role is left out by --no-owner / --no-acl (a policy never is)."""
        skipped = (_OWNER_USES if self.no_owner else set()) | (_ACL_USES if self.no_acl else set())
        if self.no_owner and self.no_acl:
            skipped |= {SETTING}
        return set(uses) <= skipped

    def role(self, name: str) -> str:
        return self.role_map.get(name, name)


def parse_role_map(pairs) -> dict[str, str]:
    """['old=new', ...] (or a dict) → {old: new}; refuses anything else, naming it."""
    if isinstance(pairs, dict):
        pairs = [f"{k}={v}" for k, v in pairs.items()]
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        old, sep, new = str(pair).partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigurationError(
                f"--role-map '{str(pair)[:80]}' is not OLD=NEW: give the backup's role name and the role of this "
                "server that takes its place, for example --role-map shop_owner=app_owner"
            )
        if old.strip() in mapping:
            raise ConfigurationError(f"--role-map names role '{old.strip()}' twice")
        mapping[old.strip()] = new.strip()
    return mapping
