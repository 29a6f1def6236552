"""The party directory: who may raise cases, from which addresses, and where we write to them.

Identity is decided here from a normalised addr-spec only (never a display name), so the
lookup is deliberately simple: an exact address first, then the sender's domain.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from gateway.settings import AuthPolicy, SettingsError
from parsers.addresses import normalise_domain


class Role(StrEnum):
    LDSO = "ldso"
    SUPPLIER = "supplier"
    SUPPLIER_AGENT = "supplier_agent"
    DCC = "dcc"
    RECCO = "recco"
    DIP_OPERATOR = "dip_operator"
    DIP_CONNECTION_PROVIDER = "dip_connection_provider"
    SOFTWARE_PROVIDER = "software_provider"
    ELEXON = "elexon"


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    role: Role
    mpids: tuple[str, ...]
    domains: tuple[str, ...]
    addresses: tuple[str, ...]
    contact: str
    authentication: AuthPolicy | None = None  # None: [authentication] policy

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "mpids": list(self.mpids),
            "domains": list(self.domains),
            "addresses": list(self.addresses),
            "contact": self.contact,
            "authentication": self.authentication,
        }


@dataclass(frozen=True)
class Desk:
    """A service or help desk a case can be redirected to (shared/domain.md, section 0)."""

    id: str
    name: str
    covers: str
    contact: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "covers": self.covers, "contact": self.contact}


class Directory:
    """The loaded directory with lookup indexes built once."""

    def __init__(self, parties: tuple[Party, ...], desks: tuple[Desk, ...] = ()) -> None:
        self.parties = parties
        self.desks = desks
        self._by_address: dict[str, Party] = {}
        self._by_domain: dict[str, Party] = {}
        for party in parties:
            for address in (*party.addresses, party.contact):
                self._by_address.setdefault(address.lower(), party)
            for domain in party.domains:
                self._by_domain.setdefault(domain, party)
        self._by_id = {p.id.upper(): p for p in parties}

    def by_address(self, address: str) -> Party | None:
        """The party an address belongs to: its own listing first, then its domain."""
        address = address.lower()
        found = self._by_address.get(address)
        if found is not None:
            return found
        return self._by_domain.get(address.rpartition("@")[2])

    def by_id(self, party_id: str) -> Party | None:
        return self._by_id.get(party_id.upper())

    def by_mpid(self, mpid: str) -> Party | None:
        mpid = mpid.upper()
        return next((p for p in self.parties if mpid in p.mpids), None)

    def resolve(self, name: str) -> Party | None:
        """A party named by a person: its id, an MPID, or its name (case-insensitive)."""
        found = self.by_id(name) or self.by_mpid(name)
        if found is not None:
            return found
        lowered = name.strip().lower()
        return next((p for p in self.parties if p.name.lower() == lowered), None)

    def desk(self, name: str) -> Desk | None:
        lowered = name.strip().lower()
        return next(
            (d for d in self.desks if d.id.lower() == lowered or d.name.lower() == lowered), None
        )

    @property
    def mpids(self) -> frozenset[str]:
        return frozenset(m for p in self.parties for m in p.mpids)


def load_directory(path: Path) -> Directory:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: party directory not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read party directory: {exc}") from None
    unknown = set(data) - {"party", "desk"}
    if unknown:
        raise SettingsError(f"{path}: unknown section [{sorted(unknown)[0]}]")
    parties = tuple(_party(path, i, item) for i, item in enumerate(data.get("party", [])))
    desks = tuple(_desk(path, i, item) for i, item in enumerate(data.get("desk", [])))
    ids = [p.id.upper() for p in parties]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise SettingsError(f"{path}: party id {duplicate} is listed twice")
    return Directory(parties=parties, desks=desks)


_PARTY_KEYS = {"id", "name", "role", "mpids", "domains", "addresses", "contact", "authentication"}
_AUTH_POLICIES: tuple[AuthPolicy, ...] = ("strict", "relaxed", "off")
_DESK_KEYS = {"id", "name", "covers", "contact"}


def _party(path: Path, index: int, item: dict[str, Any]) -> Party:
    where = f"{path}: [[party]] #{index + 1}"
    unknown = set(item) - _PARTY_KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown key {sorted(unknown)[0]}")
    for key in ("id", "name", "role", "contact"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise SettingsError(f"{where}: {key} is required")
    try:
        role = Role(item["role"])
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise SettingsError(f"{where}: role {item['role']!r} is not one of {allowed}") from None
    domains = []
    for domain in _strings(where, item, "domains"):
        normalised = normalise_domain(domain)
        if normalised is None:
            raise SettingsError(f"{where}: domains: {domain!r} is not a domain")
        domains.append(normalised)
    mpids = tuple(m.upper() for m in _strings(where, item, "mpids"))
    bad_mpid = next((m for m in mpids if len(m) != 4 or not m.isalnum()), None)
    if bad_mpid:
        raise SettingsError(f"{where}: mpids: {bad_mpid!r} is not a 4-character MPID")
    return Party(
        id=item["id"],
        name=item["name"],
        role=role,
        mpids=mpids,
        domains=tuple(domains),
        addresses=tuple(
            _address(where, "addresses", a) for a in _strings(where, item, "addresses")
        ),
        contact=_address(where, "contact", item["contact"]),
        authentication=_auth_policy(where, item.get("authentication")),
    )


def _auth_policy(where: str, value: object) -> AuthPolicy | None:
    if value is None:
        return None
    for policy in _AUTH_POLICIES:
        if value == policy:
            return policy
    raise SettingsError(f"{where}: authentication must be one of {', '.join(_AUTH_POLICIES)}")


def _desk(path: Path, index: int, item: dict[str, Any]) -> Desk:
    where = f"{path}: [[desk]] #{index + 1}"
    unknown = set(item) - _DESK_KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown key {sorted(unknown)[0]}")
    for key in _DESK_KEYS:
        if not isinstance(item.get(key), str) or not item[key]:
            raise SettingsError(f"{where}: {key} is required")
    return Desk(id=item["id"], name=item["name"], covers=item["covers"], contact=item["contact"])


def _strings(where: str, item: dict[str, Any], key: str) -> list[str]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{where}: {key} must be a list of strings")
    return value


def _address(where: str, key: str, value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise SettingsError(f"{where}: {key}: {value!r} is not a valid address ({exc})") from None
