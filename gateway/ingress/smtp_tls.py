"""STARTTLS for the SMTP listener (RFC 3207), from the certificate named in [smtp].

Other organisations' MTAs deliver case mail, MPANs and evidence in it; where the listener
faces anything but loopback it should offer TLS and, once every sender can, require it
(``require_tls``: before STARTTLS only EHLO, HELO, NOOP, QUIT and STARTTLS are allowed,
anything else gets aiosmtpd's ``530 5.7.0``; reliability.md B6). The context is built
when ``serve`` starts, so a missing or mismatched file stops it with one line naming the
key, never at the first sender's handshake.
"""

from __future__ import annotations

import os
import ssl

from gateway.settings import Settings, SettingsError


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's TLS context (TLS 1.2 or later), or None when no certificate is set."""
    smtp = settings.smtp
    if not smtp.tls_certificate_file:
        return None
    for key, name in (("tls_certificate_file", smtp.tls_certificate_file),
                      ("tls_key_file", smtp.tls_key_file)):  # fmt: skip
        if name and not os.access(name, os.R_OK):
            raise SettingsError(f"{settings.source}: [smtp] {key}: cannot read {name}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(smtp.tls_certificate_file, smtp.tls_key_file or None)
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{settings.source}: [smtp] tls_certificate_file and tls_key_file do not load "
            f"as a certificate and its key: {exc.reason or exc}"
        ) from None
    return context
