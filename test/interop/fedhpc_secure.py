"""A site's part in one secure attempt (docs/protocol.md, "The stages, side by side"): its secrets,
the checks it makes of what the coordinator relays, and the bytes it sends at each stage.

The secrets (X25519 keys, self-mask seed, rounding seed, shares received) live in this object
only, for one attempt, and are never written anywhere.
"""

import datetime
import os

import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

import fedhpc_secagg as sa


class Refused(Exception):
    """The site's own check refused a stage: reported with ReportFailure under `code`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def sign_p256(private_key, data):
    """Signed payloads: ECDSA P-256 / SHA-256, DER, with the site certificate's key."""
    return private_key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_p256(certificate, signature, data):
    try:
        certificate.public_key().verify(bytes(signature), data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _one(name, oid):
    values = name.get_attributes_for_oid(oid)
    return values[0].value if len(values) == 1 else None


def check_site_certificate(pem, ca, site, now=None):
    """Signed payloads: the advertiser's certificate chains to the federation CA, is valid now, is
    not a CA, and has OU `site` and CN = the site. Returns the certificate or raises Refused."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("utf-8"))
    except ValueError as e:
        raise Refused("ADVERTISEMENT_INVALID", f"{site}: the advertised certificate is not PEM ({e})") from e
    if cert.issuer != ca.subject:
        raise Refused("ADVERTISEMENT_INVALID", f"{site}: certificate not issued by the federation CA")
    try:
        key = ca.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            raise InvalidSignature("unsupported CA key")
    except InvalidSignature as e:
        raise Refused("ADVERTISEMENT_INVALID", f"{site}: the certificate's signature does not verify with the federation CA") from e
    now = now or datetime.datetime.utcnow()
    if not cert.not_valid_before <= now <= cert.not_valid_after:
        raise Refused("ADVERTISEMENT_INVALID", f"{site}: certificate not valid now")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Refused("ADVERTISEMENT_INVALID", f"{site}: a CA certificate")
    except x509.ExtensionNotFound:
        pass
    if _one(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) != "site" or _one(cert.subject, NameOID.COMMON_NAME) != site:
        raise Refused("ADVERTISEMENT_INVALID", f"{site}: certificate subject {cert.subject.rfc4514_string()} is not site {site}")
    return cert


class SecureAttempt:
    """One attempt: made at `keys`, fed each later stage's task (as plain Python values)."""

    def __init__(self, site, run_id, round_, attempt, params, signing_key, ca, random_bytes=os.urandom):
        if params["threshold"] < 2:
            raise Refused("SECAGG_PARAMS", f"threshold {params['threshold']} is below 2")
        if params["modulus_bits"] not in (16, 32):
            raise Refused("WIRE_INVALID", f"a modulus of 2^{params['modulus_bits']} (words are 16 or 32 bits)")
        if not 2 <= params["quant_bits"] < params["modulus_bits"]:
            raise Refused("SECAGG_PARAMS", f"quant_bits {params['quant_bits']} outside [2, {params['modulus_bits']})")
        if not params["clip"] > 0:
            raise Refused("SECAGG_PARAMS", f"clip {params['clip']} is not positive")
        self.site, self.run_id, self.round, self.attempt = site, run_id, round_, attempt
        self.session = sa.session_id(run_id, attempt)
        self.params = params
        self.signing_key = signing_key
        self.ca = ca
        self.random_bytes = random_bytes
        # Round 0: fresh secrets of this attempt (docs/protocol.md, "What binds to the attempt").
        self.c_private = random_bytes(32)
        self.s_private = random_bytes(32)
        self.self_seed = random_bytes(32)
        self.rounding_seed = random_bytes(32)
        self.c_public = sa.x25519_public(self.c_private)
        self.s_public = sa.x25519_public(self.s_private)
        self.neighbours = []
        self.certificates = {}
        self.peer_keys = {}
        self.own_shares = None
        self.received = {}
        self.share_holders = []
        self.signed = None
        self.revealed = False

    # ------------------------------------------------------------------ round 0

    def advertisement(self):
        data = sa.advertisement_bytes(self.session, self.round, self.site, self.c_public, self.s_public)
        return self.c_public, self.s_public, sign_p256(self.signing_key, data)

    # ------------------------------------------------------------------ round 1

    def shares(self, advertisements):
        """advertisements: [(site, c_pk, s_pk, signature, certificate_pem, run_id, round, attempt)].
        Verifies the neighbours' advertisements, then returns [(to, nonce, ciphertext_and_tag)]."""
        u1 = [a[0] for a in advertisements]
        if len(set(u1)) != len(u1):
            raise Refused("ADVERTISEMENT_INVALID", "a site advertised twice")
        if self.site not in u1:
            raise Refused("ADVERTISEMENT_INVALID", "this site's own advertisement is missing")
        try:
            graph = sa.session_graph(u1, self.params["graph_seed"], self.params["degree"])
        except sa.ProtocolError as e:
            raise Refused(e.code, str(e)) from e
        self.neighbours = graph.neighbours(self.site)
        by_site = {a[0]: a for a in advertisements}
        for v in self.neighbours:
            site, c_pk, s_pk, signature, pem, run_id, round_, attempt = by_site[v]
            if (run_id, round_, attempt) != (self.run_id, self.round, self.attempt):
                raise Refused("ADVERTISEMENT_INVALID", f"{v}: an advertisement of another attempt")
            cert = check_site_certificate(pem, self.ca, v)
            try:
                data = sa.advertisement_bytes(self.session, self.round, v, c_pk, s_pk)
            except sa.ProtocolError as e:
                raise Refused(e.code, f"{v}: {e}") from e
            if not verify_p256(cert, signature, data):
                raise Refused("ADVERTISEMENT_INVALID", f"{v}: the advertisement's signature does not verify")
            self.certificates[v] = cert
            self.peer_keys[v] = (bytes(c_pk), bytes(s_pk))
        # Shamir sharing among itself and its neighbours: x = 1-based position in the sorted list.
        members = sorted(self.neighbours + [self.site])
        t = self.local_threshold()
        s_shares = sa.shamir_split(self.s_private, t, len(members), self.random_bytes)
        b_shares = sa.shamir_split(self.self_seed, t, len(members), self.random_bytes)
        out = []
        for (x, mk), (_, ss), member in zip(s_shares, b_shares, members):
            payload = sa.encode_share_payload(x, mk, ss)
            if member == self.site:
                self.own_shares = (x, mk, ss)
                continue
            key = sa.share_encryption_key(sa.shared_secret(self.c_private, self.peer_keys[member][0]), self.session, self.round, self.site, member)
            nonce = self.random_bytes(12)
            out.append((member, nonce, sa.seal_share(key, nonce, self.session, self.round, self.site, member, payload)))
        return out

    def local_threshold(self):
        return min(self.params["threshold"], len(self.neighbours) + 1)

    # ------------------------------------------------------------------ training

    def receive_shares(self, shares, share_holders):
        """shares: [(from, to, nonce, ciphertext_and_tag)] sealed for this site by U2."""
        if self.site not in share_holders:
            raise Refused("SHARES_INVALID", "this site is not among the share holders")
        expected = {v for v in self.neighbours if v in share_holders}
        got = {}
        for sender, to, nonce, ct in shares:
            if sender not in expected:
                raise Refused("SHARES_INVALID", f"a share from {sender}, not a neighbour among the share holders")
            if sender in got:
                raise Refused("SHARES_INVALID", f"two shares from {sender}")
            key = sa.share_encryption_key(sa.shared_secret(self.c_private, self.peer_keys[sender][0]), self.session, self.round, sender, self.site)
            try:
                got[sender] = sa.open_share(key, nonce, ct, (self.session, self.round, sender, to), (self.session, self.round, sender, self.site))
            except sa.ProtocolError as e:
                raise Refused(e.code, f"share from {sender}: {e}") from e
        missing = sorted(expected - set(got))
        if missing:
            raise Refused("SHARES_INVALID", f"no share from {', '.join(missing)}")
        self.received = got
        self.share_holders = list(share_holders)

    # ------------------------------------------------------------------ upload (round 2)

    def masked_words(self, delta, count):
        """Quantization, the weight word and masking of the whole delta: N + 1 words."""
        p = self.params
        weighting = p["weighting"] or "samples"
        try:
            w = sa.encoded_weight(1 if weighting == "uniform" else count, p["max_weight"])
        except sa.ProtocolError as e:
            raise Refused(e.code, str(e)) from e
        n = len(delta)
        u = sa.expand(self.rounding_seed, 0, n + 1, 32)
        v = np.concatenate([sa.quantize(delta, p["clip"], p["quant_bits"], w, u[:n]), sa.quantize([w], 1.0, p["quant_bits"], 1.0, u[n:])])
        pairwise = []
        for peer in self.neighbours:
            if peer in self.share_holders:
                seed = sa.pairwise_mask_seed(sa.shared_secret(self.s_private, self.peer_keys[peer][1]), self.session, self.round, self.site, peer)
                pairwise.append((seed, 1 if self.site < peer else -1))
        return sa.mask_words(v, 0, p["modulus_bits"], self.self_seed, pairwise), w

    # ------------------------------------------------------------------ consistency check

    def sign_survivors(self, survivors, dropped):
        s, d = list(survivors), list(dropped)
        if len(set(s)) != len(s) or len(set(d)) != len(d) or set(s) & set(d):
            raise Refused("CONSISTENCY_INVALID", "survivor lists with a duplicate or a site in both")
        if len(s) < self.params["threshold"]:
            raise Refused("CONSISTENCY_INVALID", f"{len(s)} survivors, fewer than t = {self.params['threshold']}")
        if not set(s) | set(d) <= set(self.share_holders):
            raise Refused("CONSISTENCY_INVALID", "a listed site did not hold shares")
        if self.site not in s:
            raise Refused("CONSISTENCY_INVALID", "this site is not listed as a survivor")
        self.signed = (sorted(s), sorted(d))
        return sign_p256(self.signing_key, sa.survivor_list_bytes(self.session, self.round, s, d))

    # ------------------------------------------------------------------ unmasking (round 3)

    def reveal(self, survivors, dropped, signatures):
        """signatures: [(site, signature)]. Returns [(owner, kind, x, y)] to reveal, at most once."""
        if self.revealed:
            raise Refused("UNMASK_INVALID", "already revealed in this attempt")
        if self.signed is None or (sorted(survivors), sorted(dropped)) != self.signed:
            raise Refused("UNMASK_INVALID", "the unmask request's lists are not the ones this site signed")
        data = sa.survivor_list_bytes(self.session, self.round, survivors, dropped)
        valid = set()
        for site, signature in signatures:
            if site not in survivors:
                continue
            if site == self.site:
                if verify_p256_key(self.signing_key.public_key(), signature, data):
                    valid.add(site)
            elif site in self.certificates and verify_p256(self.certificates[site], signature, data):
                valid.add(site)
        if len(valid) < self.local_threshold():
            raise Refused("UNMASK_INVALID", f"{len(valid)} valid survivor signatures, {self.local_threshold()} needed")
        self.revealed = True
        held = dict(self.received)
        held[self.site] = self.own_shares
        out = []
        for owner in sorted(held):
            x, mask_key_share, self_seed_share = held[owner]
            if owner in survivors:
                out.append((owner, "self_seed", x, self_seed_share))
            elif owner in dropped:
                out.append((owner, "mask_key", x, mask_key_share))
        return out


def verify_p256_key(public_key, signature, data):
    try:
        public_key.verify(bytes(signature), data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False
