from __future__ import annotations

from pathlib import Path

import pytest

from gateway.parties import Role, load_directory
from gateway.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_demo_directory_covers_every_role_on_example_domains() -> None:
    directory = load_directory(REPO / "parties.toml")
    assert {p.role for p in directory.parties} == set(Role)
    for party in directory.parties:
        assert all(d.endswith(".example") for d in party.domains)
        assert party.contact.endswith(".example")


@pytest.mark.parametrize(
    ("address", "party_id"),
    [
        ("servicedesk@dcc.example", "DCC"),
        ("Someone.Else@DCC.example", "DCC"),
        ("mpas.helpdesk@eastern-lines.example", "EASTNET"),
        ("ops@brightenergy.example", "BRIGHTSUP"),
        ("ops@brightenergy.example.evil.example", None),
        ("ops@evil.example", None),
    ],
)
def test_lookup_by_address_then_domain(address: str, party_id: str | None) -> None:
    found = load_directory(REPO / "parties.toml").by_address(address)
    assert (found.id if found else None) == party_id


def test_resolve_by_id_mpid_or_name() -> None:
    directory = load_directory(REPO / "parties.toml")
    assert directory.resolve("dcc").id == "DCC"  # type: ignore[union-attr]
    assert directory.resolve("EELC").id == "EASTNET"  # type: ignore[union-attr]
    assert directory.resolve("Bright Energy Supply").id == "BRIGHTSUP"  # type: ignore[union-attr]
    assert directory.resolve("nobody") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('id="X"\nname="X"\nrole="wizard"\ncontact="a@x.example"', "role 'wizard' is not one of"),
        (
            'id="X"\nname="X"\nrole="dcc"\ncontact="not an address"',
            "contact: 'not an address' is not a valid address",
        ),
        (
            'id="X"\nname="X"\nrole="dcc"\ncontact="a@x.example"\nmpids=["TOOLONG"]',
            "is not a 4-character MPID",
        ),
        ('id="X"\nname="X"\nrole="dcc"\ncontact="a@x.example"\ncolour="red"', "unknown key colour"),
        (
            'id="X"\nname="X"\nrole="dcc"\ncontact="a@x.example"\ndomains=["bad domain"]',
            "is not a domain",
        ),
        (
            'id="X"\nname="X"\nrole="dcc"\ncontact="a@x.example"\nauthentication="lenient"',
            "authentication must be one of strict, relaxed, off",
        ),
    ],
)
def test_bad_directory_entries_are_named(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "parties.toml"
    path.write_text(f"[[party]]\n{entry}\n")
    with pytest.raises(SettingsError, match="#1") as caught:
        load_directory(path)
    assert message in str(caught.value)


def test_a_party_may_have_its_own_authentication_policy(tmp_path: Path) -> None:
    path = tmp_path / "parties.toml"
    path.write_text(
        '[[party]]\nid="X"\nname="X"\nrole="dcc"\ncontact="a@x.example"\n'
        'authentication="relaxed"\n\n[[party]]\nid="Y"\nname="Y"\nrole="dcc"\n'
        'contact="b@y.example"\n'
    )
    x, y = load_directory(path).parties
    assert (x.authentication, y.authentication) == ("relaxed", None)
