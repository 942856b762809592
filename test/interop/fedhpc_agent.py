#!/usr/bin/python3
"""A fedhpc site agent in Python: the second implementation that keeps the first honest.

Written from docs/protocol.md, proto/fedhpc/v1/fedhpc.proto and proto/vectors/ only (nothing is
taken from site-agent/). It joins over mutual TLS with the site's provisioned certificate, keeps
its Tasks stream open, heartbeats, downloads global models (CRC32C per chunk, SHA-256 of the file),
trains with a deterministic stand-in trainer, uploads plain or masked deltas in striped, windowed,
resumable streams, takes part in every SecAgg+ stage and signs receipts of committed rounds (its
usage declared unknown: the stand-in trainer runs on no scheduler). It honours a round's training budget (tokens or seconds) and keeps work that missed its round to
fold into a later upload (fedhpc_fold.py: discounted by staleness, weighed W, mixed, masked with the
later attempt's keys; refused parts dropped and the fresh delta sent alone).

Every round's delta and declared counts are written to the dump folder (round-<r>.f32 and
round-<r>.json) so a test can compute the expected mean on its own; events.jsonl records what the
agent did. Test-only behaviour: --drop-at-upload R (cut the connection instead of uploading in
round R, having shared), --cut-upload R:N (cut the first upload stream of round R after N bytes,
once, and resume it), --corrupt-upload R:crc|digest (one chunk with a wrong CRC32C, or one piece
with a wrong SHA-256, in round R: the coordinator asks for it again), --miss-window R (train round
R, keep the work and leave the attempt with ReportFailure DEADLINE_PASSED instead of uploading),
--refold R (fold once more in round R the parts a committed round already counted: the coordinator
refuses them with ALREADY_COUNTED and the agent sends its fresh delta alone).

Several --address options are coordinator addresses tried in order; a standby that answers
NOT_LEADER naming the leader in its `fedhpc-leader` metadata is followed there (docs/protocol.md,
"Standby coordinators and NOT_LEADER"): at once the first time, after the backoff if the address
it was sent to is no leader either; NOT_LEADER naming none, UNAVAILABLE or DEADLINE_EXCEEDED moves
to the next configured address, waiting the backoff once every address has been tried.

Usage: /usr/bin/python3 fedhpc_agent.py --address HOST:PORT [--address HOST:PORT ...] --ca ca.crt --cert site.crt
       --key site.key --dump DIR [--stubs DIR] [options]
"""

import argparse
import hashlib
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import queue

import grpc
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fedhpc_formats as fmt  # noqa: E402
import fedhpc_secagg as sa  # noqa: E402
from fedhpc_fold import FOLD_REFUSALS, Fold, part_count  # noqa: E402
from fedhpc_secure import Refused, SecureAttempt, sign_p256  # noqa: E402
from fedhpc_site import Dump, Trainer, encode_plain, train_config  # noqa: E402
from fedhpc_upload import Upload, UploadFailed, error_of  # noqa: E402

PROTOCOL_VERSION = fmt.PROTOCOL_VERSION
AGENT_VERSION = "fedhpc-interop-py/1"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024
HEARTBEAT_S = 2.0
CALL_TIMEOUT_S = 15.0
EXIT_REFUSED = 3
# The task kinds this agent handles; it ignores any other.
TASK_KINDS = ("keys", "shares", "train", "consistency", "unmask", "eval", "finished", "cancel")
# Upload failures after which the trained work can no longer count in its round: it is kept and folded later.
MISSED_ROUND = ("ROUND_CLOSED", "NOT_INVITED", "DEADLINE", "CANCELLED")
# The usage every receipt declares: the stand-in trainer runs on no scheduler and holds no GPU, so
# it has nothing to measure and says so (docs/protocol.md "Receipts": unknown, never a silent 0).
# Codes after which the next configured coordinator address is tried.
MOVE_ON = ("NOT_LEADER", "UNAVAILABLE", "DEADLINE_EXCEEDED")
# A coordinator address as a site config takes it: host:port or [v6]:port.
ADDRESS = re.compile(r"^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
USAGE = fmt.unknown_usage("the interop stand-in trainer runs on no scheduler and declares no GPUs")


def leader_of(e):
    """The leader a standby's NOT_LEADER names in `fedhpc-leader`, when it is one host:port."""
    meta = dict(e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else {}
    leader = meta.get("fedhpc-leader") or ""
    return leader if len(leader) <= 261 and ADDRESS.match(leader) else None


def load_stubs(stubs_dir):
    """The .proto's Python stubs: from `stubs_dir`, or generated now with grpc_tools into a temp dir."""
    if not stubs_dir:
        from grpc_tools import protoc

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        stubs_dir = tempfile.mkdtemp(prefix="fedhpc-pystubs-")
        proto = os.path.join(root, "proto")
        if protoc.main(["protoc", f"-I{proto}", f"--python_out={stubs_dir}", f"--grpc_python_out={stubs_dir}", os.path.join(proto, "fedhpc", "v1", "fedhpc.proto")]) != 0:
            raise SystemExit("grpc_tools.protoc could not compile proto/fedhpc/v1/fedhpc.proto")
    sys.path.insert(0, stubs_dir)
    from fedhpc.v1 import fedhpc_pb2, fedhpc_pb2_grpc

    return fedhpc_pb2, fedhpc_pb2_grpc


class Agent:
    def __init__(self, args, pb, pbg):
        self.args, self.pb = args, pb
        read = lambda p: open(p, "rb").read()  # noqa: E731
        self.cert_pem, key_pem, ca_pem = read(args.cert), read(args.key), read(args.ca)
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        self.site = args.site or cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        self.federation = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        self.signing_key = load_pem_private_key(key_pem, None)
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self.pbg = pbg
        self.creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=self.cert_pem)
        self.addresses = list(args.address)
        self.channel, self.stub = None, None
        # Channels to the aggregator shards that take part uploads, by endpoint, once their role is checked.
        self.shards = {}
        self._dial(self.addresses[0])
        self.dump = Dump(args.dump)
        self.trainer = Trainer(args.seed if args.seed is not None else int(hashlib.sha256(self.site.encode()).hexdigest()[:8], 16), args.samples, args.step_ms / 1000)
        self.models = os.path.join(args.dump, "models")
        os.makedirs(self.models, exist_ok=True)
        self.stop = threading.Event()
        self.work = queue.Queue()
        self.attempts = {}
        self.cancels = {}
        self.contributions = {}
        self.receipted = set()
        self.dropped_rounds = set()
        self.missed_rounds = set()
        self.fold = Fold(os.path.join(args.dump, "kept"), self.dump.event, args.refold)
        self.cut = dict(x.split(":") for x in args.cut_upload)
        self.cut = {int(r): int(n) for r, n in self.cut.items()}
        self.corrupt = {}
        for x in args.corrupt_upload:
            r, what = x.split(":")
            self.corrupt.setdefault(int(r), set()).add(what)
        self.activity, self.round = "idle", 0
        self.tasks_call = None
        self.dropping = False
        self.exit_code = 0

    # ------------------------------------------------------------------ connection loop

    def run(self):
        threading.Thread(target=self._worker, daemon=True, name="worker").start()
        threading.Thread(target=self._heartbeats, daemon=True, name="heartbeat").start()
        loop = threading.Thread(target=self._connection_loop, daemon=True, name="tasks")
        loop.start()
        while not self.stop.wait(0.2):
            pass
        if self.tasks_call is not None:
            self.tasks_call.cancel()
        self.channel.close()
        return self.exit_code

    def _dial(self, address):
        """A channel to `address`; its host is the name the coordinator's certificate must hold."""
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
        old = self.channel
        self.address = address
        self.channel = grpc.secure_channel(address, self.creds, options)
        self.stub = self.pbg.SiteServiceStub(self.channel)
        if old is not None:
            old.close()

    def shutdown(self, *_):
        self.dump.event("stopping")
        self.stop.set()

    def _connection_loop(self):
        backoff = 0.2
        # Where the loop stands among the coordinators: the configured address last dialled, and
        # whether the current one was reached by following a standby's NOT_LEADER.
        index, followed = 0, False
        while not self.stop.is_set():
            try:
                self._join()
                followed = False
                self.tasks_call = self.stub.Tasks(self.pb.TasksRequest())
                self.dump.event("tasks-open")
                backoff = 0.2
                for task in self.tasks_call:
                    self._dispatch(task)
                self.dump.event("tasks-ended")
            except grpc.RpcError as e:
                code, retryable, details = error_of(e)
                if self.stop.is_set():
                    return
                if self.dropping:
                    self.dropping = False
                    self.dump.event("reconnecting-after-drop")
                    time.sleep(self.args.drop_pause)
                    continue
                self.dump.event("connection-lost", code=code, retryable=retryable, details=details)
                if not retryable and code != "NOT_JOINED":
                    self.dump.event("refused", code=code, details=details)
                    self.exit_code = EXIT_REFUSED
                    self.stop.set()
                    return
                leader = leader_of(e) if code == "NOT_LEADER" else None
                if leader is not None and leader != self.address:
                    wait = followed
                    self.dump.event("following-leader", address=leader, named_by=self.address, backoff=wait)
                    self._dial(leader)
                    followed = True
                    if not wait:
                        continue
                elif code in MOVE_ON:
                    index = (index + 1) % len(self.addresses)
                    if self.addresses[index] != self.address:
                        self.dump.event("next-address", address=self.addresses[index], left=self.address, code=code)
                        self._dial(self.addresses[index])
                    followed = False
                    if index != 0:
                        continue
            time.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    def _join(self):
        self.dump.event("joining", address=self.address)
        r = self.stub.Join(self.pb.JoinRequest(protocol_version=PROTOCOL_VERSION, site_id=self.site, agent_version=AGENT_VERSION), timeout=CALL_TIMEOUT_S)
        if r.site_id != self.site or r.protocol_version != PROTOCOL_VERSION or r.federation != self.federation:
            self.dump.event("refused", code="JOIN_MISMATCH", details=f"Join answered {r.site_id}@{r.federation} v{r.protocol_version}, expected {self.site}@{self.federation} v{PROTOCOL_VERSION}")
            self.exit_code = EXIT_REFUSED
            self.stop.set()
            raise SystemExit(EXIT_REFUSED)
        self.dump.event("joined", federation=r.federation, heartbeat_interval_ms=r.heartbeat_interval_ms, address=self.address)

    def _heartbeats(self):
        # One Heartbeats stream at a time (version 13), each request a heartbeat and each answer
        # read; an error ends the stream and the next heartbeat opens another (on the stub of the
        # moment: a new address's channel closes the old one, which ends its stream).
        def beats():
            while not self.stop.wait(HEARTBEAT_S):
                yield self.pb.HeartbeatRequest(activity=self.activity, round=self.round, progress=-1.0)

        while not self.stop.is_set():
            try:
                for _ in self.stub.Heartbeats(beats()):
                    pass
            except (grpc.RpcError, ValueError):
                pass  # status only (ValueError: a channel closed under a new address); the Tasks stream decides
            self.stop.wait(HEARTBEAT_S)  # a stream refused at once is not reopened in a tight loop

    def _dispatch(self, task):
        kind = task.WhichOneof("kind")
        if kind not in TASK_KINDS:
            return  # a task kind this agent does not know (a newer coordinator's): ignored
        body = getattr(task, kind)
        # Conventions: a uint64 above 2^53 − 1 breaks the contract (WIRE_INVALID), as a task
        # without the body its kind requires does.
        too_big = [f.name for f, v in body.ListFields() if f.type == f.TYPE_UINT64 and not isinstance(v, (list, tuple)) and v > sa.MAX_SAFE_INTEGER]
        missing = {"train": "global_model", "eval": "model", "keys": "params", "finished": "model"}.get(kind)
        if too_big or (missing and not body.HasField(missing)):
            what = f"{', '.join(too_big)} above 2^53 - 1" if too_big else f"no {missing}"
            self._fail((body.run_id, min(getattr(body, "round", 0), sa.MAX_SAFE_INTEGER), getattr(body, "attempt", 0)), "WIRE_INVALID", f"a {kind} task with {what}")
            return
        if kind == "cancel":
            key = (body.run_id, body.round, body.attempt)
            self.cancels.setdefault(key, threading.Event()).set()
            self.attempts.pop(key, None)
            self.dump.event("cancelled", round=body.round, attempt=body.attempt, reason=body.reason)
            return
        self.work.put((kind, body))

    # ------------------------------------------------------------------ tasks, one at a time

    def _worker(self):
        handlers = {"keys": self._keys, "shares": self._shares, "train": self._train, "consistency": self._consistency, "unmask": self._unmask, "eval": self._eval, "finished": self._finished}
        while not self.stop.is_set():
            try:
                kind, body = self.work.get(timeout=0.5)
            except queue.Empty:
                continue
            key = (body.run_id, getattr(body, "round", 0), getattr(body, "attempt", 0))
            try:
                handlers[kind](body)
            except Refused as e:
                self._fail(key, e.code, str(e))
            except UploadFailed as e:
                if e.code != "CANCELLED":
                    self._fail(key, e.code, str(e))
            except grpc.RpcError as e:
                code, _, details = error_of(e)
                self.dump.event("call-refused", task=kind, round=key[1], attempt=key[2], code=code, details=details)
            except Exception as e:  # a bug of this agent: reported, and the test sees it in events
                traceback.print_exc()
                self._fail(key, "AGENT_ERROR", f"{type(e).__name__}: {e}")
            finally:
                self.activity = "idle"

    def _fail(self, key, code, message):
        self.dump.event("failure", round=key[1], attempt=key[2], code=code, message=message)
        try:
            self.stub.ReportFailure(self.pb.TrainingFailure(run_id=key[0], round=key[1], attempt=key[2], code=code[:64], message=message[:1024], retryable=False), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError:
            pass

    def _attempt(self, body):
        return self.attempts.get((body.run_id, body.round, body.attempt))

    def _keys(self, t):
        p = t.params
        params = {
            "threshold": p.threshold,
            "quant_bits": p.quant_bits,
            "modulus_bits": 32 if p.modulus_bits == 0 else p.modulus_bits,
            "clip": p.clip,
            "max_weight": p.max_weight,
            "weighting": p.weighting,
            "graph_seed": bytes(p.graph_seed),
            "degree": p.degree,
            "roster": list(p.roster),
        }
        self.activity, self.round = "keys", t.round
        att = SecureAttempt(self.site, t.run_id, t.round, t.attempt, params, self.signing_key, self.ca)
        self.attempts[(t.run_id, t.round, t.attempt)] = att
        c_pk, s_pk, signature = att.advertisement()
        self.stub.AdvertiseKeys(
            self.pb.KeyAdvertisement(run_id=t.run_id, round=t.round, attempt=t.attempt, site_id=self.site, c_public_key=c_pk, s_public_key=s_pk, signature=signature, certificate_pem=self.cert_pem.decode()),
            timeout=CALL_TIMEOUT_S,
        )
        self.dump.event("advertised", round=t.round, attempt=t.attempt, threshold=p.threshold, roster=list(p.roster))

    def _shares(self, t):
        att = self._attempt(t)
        if att is None:
            return  # secrets of an attempt this agent no longer holds: it dropped out
        self.activity = "shares"
        ads = [(a.site_id, a.c_public_key, a.s_public_key, a.signature, a.certificate_pem, a.run_id, a.round, a.attempt) for a in t.advertisements]
        sealed = att.shares(ads)
        shares = [self.pb.EncryptedShare(from_site=self.site, to_site=to, nonce=nonce, ciphertext=ct) for to, nonce, ct in sealed]
        self.stub.SubmitShares(self.pb.SharesSubmission(run_id=t.run_id, round=t.round, attempt=t.attempt, shares=shares), timeout=CALL_TIMEOUT_S)
        self.dump.event("shared", round=t.round, attempt=t.attempt, neighbours=att.neighbours)

    def _consistency(self, t):
        att = self._attempt(t)
        if att is None:
            return
        self.activity = "consistency"
        signature = att.sign_survivors(list(t.survivors), list(t.dropped))
        self.stub.SignSurvivors(self.pb.SurvivorSignature(run_id=t.run_id, round=t.round, attempt=t.attempt, site_id=self.site, signature=signature), timeout=CALL_TIMEOUT_S)
        self.dump.event("signed", round=t.round, attempt=t.attempt, survivors=list(t.survivors), dropped=list(t.dropped))

    def _unmask(self, t):
        att = self._attempt(t)
        if att is None:
            return
        self.activity = "unmask"
        shares = att.reveal(list(t.survivors), list(t.dropped), [(s.site_id, s.signature) for s in t.signatures])
        wire = [self.pb.RevealedShare(owner=o, kind=k, x=x, y=y) for o, k, x, y in shares]
        self.stub.RevealShares(self.pb.UnmaskResponse(run_id=t.run_id, round=t.round, attempt=t.attempt, shares=wire), timeout=CALL_TIMEOUT_S)
        self.dump.event("revealed", round=t.round, attempt=t.attempt, shares=[[o, k] for o, k, _, _ in shares])

    # ------------------------------------------------------------------ a round's work

    def _train(self, t):
        key = (t.run_id, t.round, t.attempt)
        cancel = self.cancels.setdefault(key, threading.Event())
        self.round = t.round
        self._receipt(t.run_id, t.model_round, t.global_model.sha256)
        encoding = t.encoding.name or "f32"
        secure = encoding in ("secagg32", "secagg16")
        att = self._attempt(t) if secure else None
        if secure and att is None:
            raise Refused("SECURE_SESSION_LOST", "a secure train task of an attempt whose keys this agent does not hold")
        if secure:
            if (encoding == "secagg32") != (att.params["modulus_bits"] == 32):
                raise Refused("WIRE_INVALID", f"encoding {encoding} with a modulus of 2^{att.params['modulus_bits']}")
            att.receive_shares([(s.from_site, s.to_site, s.nonce, s.ciphertext) for s in t.shares], list(t.share_holders))
        train = train_config(t.train_config_json)
        model = self._download(t.global_model.sha256, cancel)
        declared = [(x.name, x.dtype, list(x.shape)) for x in t.tensors]
        if fmt.safetensors_tensors(model) != declared:
            raise Refused("MODEL_INVALID", "the global model's tensors differ from the task's")
        if t.evaluate:
            loss, samples = self.trainer.evaluate(t.model_round)
            self.stub.ReportEval(self.pb.EvalReport(run_id=t.run_id, model_round=t.model_round, model_sha256=t.global_model.sha256, loss=loss, samples=samples), timeout=CALL_TIMEOUT_S)
            self.dump.event("evaluated", model_round=t.model_round, loss=loss)
        self.activity = "training"
        counts_per_tensor = [int(np.prod(x.shape, dtype=np.int64)) for x in t.tensors]
        delta, counts = self.trainer.train(t.round, sum(counts_per_tensor), train)
        manifest = hashlib.sha256(f"fedhpc-interop:{self.site}:{t.round}".encode()).hexdigest()
        self.dump.round(t.round, delta, {**counts, "attempt": t.attempt, "encoding": encoding, "base": t.global_model.sha256, "modelRound": t.model_round})
        if t.round in self.args.drop_at_upload and t.round not in self.dropped_rounds:
            return self._drop(t)
        if t.round in self.args.miss_window and t.round not in self.missed_rounds:
            return self._miss(t, delta, counts, "--miss-window: trained, but not uploaded in its window")
        self.activity = "upload"
        # Bases, staleness and folded work: kept parts go with the fresh delta (secure rounds, whose
        # parameters say the run's weighting and maxSiteWeight; a plain task says neither).
        weighting = (att.params["weighting"] or "samples") if secure else None
        plan = None
        if secure:
            plan = self.fold.plan(t.run_id, t.round, t.global_model.sha256, t.model_round, t.max_staleness, weighting, att.params["max_weight"], att.params["clip"], delta, counts)
        try:
            try:
                result = self._upload(t, att, encoding, counts_per_tensor, delta, counts, manifest, cancel, plan)
            except UploadFailed as e:
                refusal = next((c for c in e.codes if c in FOLD_REFUSALS), None)
                if plan is None or refusal is None:
                    raise
                self.dump.event("fold-refused", round=t.round, attempt=t.attempt, code=refusal, codes=e.codes, message=str(e))
                self.fold.refused(plan, refusal)
                plan = None
                result = self._upload(t, att, encoding, counts_per_tensor, delta, counts, manifest, cancel, None)
        except UploadFailed as e:
            if e.code in MISSED_ROUND:
                self._miss(t, delta, counts, f"the upload could not count in its round ({e.code})", report=False)
            raise
        # What the receipt names: the delta's SHA-256 (this agent's own, which the receiver matched),
        # or of one uploaded in parts, each part's and the SHA-256 of their lines.
        parts = [{"start": p["start"], "end": p["end"], "sha256": p["sha256"]} for p in result.get("parts", [])]
        delta = {"sha256": fmt.parts_sha256(parts) if parts else result["sha256"], "parts": parts}
        self.contributions[(t.run_id, t.round)] = (t.global_model.sha256, manifest, delta)
        if plan is not None:
            self.fold.uploaded(plan, t.run_id, t.round)
        self.dump.event("uploaded", round=t.round, attempt=t.attempt, folded=0 if plan is None else len(plan["parts"]), **result)

    def _upload(self, t, att, encoding, counts_per_tensor, fresh, counts, manifest, cancel, plan):
        """One upload of the attempt: the fresh delta alone, or mixed with the plan's folded parts."""
        delta = fresh if plan is None else plan["delta"]
        if att is not None:
            weighting = att.params["weighting"] or "samples"
            count = plan["weight"] if plan is not None else part_count(weighting, counts)
            words, _ = att.masked_words(delta, count)
            data = sa.words_bytes(words, att.params["modulus_bits"])
        else:
            data = encode_plain(delta, encoding, counts_per_tensor)
        folded = [] if plan is None else [self.pb.FoldedPart(base_model_sha256=p["base"], samples=p["samples"], tokens=p["tokens"], steps=p["steps"]) for p in plan["parts"]]
        header = self.pb.UploadHeader(
            run_id=t.run_id, round=t.round, attempt=t.attempt, base_model_sha256=t.global_model.sha256, encoding=self.pb.Encoding(name=encoding),
            tensors=list(t.tensors), total_bytes=len(data), samples=counts["samples"], tokens=counts["tokens"], steps=counts["steps"],
            train_loss=counts["trainLoss"], data_manifest_sha256=manifest, train_started_ms=counts["trainStartedMs"], train_finished_ms=counts["trainFinishedMs"], folded=folded,
            # Lock-step rounds: nothing is applied late (docs/protocol.md, "Header").
            applied_staleness_steps=0, busy_ms=counts["busyMs"],
        )
        deadline = t.upload_deadline_ms / 1000 if t.upload_deadline_ms else time.time() + 300
        self.dump.event("admitting", round=t.round, attempt=t.attempt, bytes=len(data), folded=len(folded))
        parts = self._admit(header, len(data))
        upload = Upload(
            self.stub, self.pb, header, data, fmt.delta_segments(encoding, counts_per_tensor), t.max_streams or 1, min(t.max_chunk_bytes or 1 << 20, self.args.chunk_bytes),
            deadline, lambda kind, **f: self.dump.event(kind, round=t.round, attempt=t.attempt, **f), cut_after=self.cut.pop(t.round, None), cancelled=cancel,
            min_stripe_bytes=self.args.min_stripe_bytes, corrupt=self.corrupt.pop(t.round, ()), parts=parts,
        )
        self.dump.event("uploading", round=t.round, attempt=t.attempt, bytes=len(data), stripes=upload.stripes, sha256=upload.sha256, folded=len(folded), parts=[[p.start, p.end] for p in upload.parts if not p.whole])
        return upload.run()

    def _admit(self, header, total):
        """Where the delta goes (docs/protocol.md, "Part uploads"): (stub, start, end) per aggregator
        shard the coordinator names, or None for the whole delta to the coordinator."""
        try:
            admission = self.stub.AdmitUpload(header, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as e:
            code, retryable, details = error_of(e)
            if code == "UNIMPLEMENTED":
                return None
            raise UploadFailed(code, details, retryable=retryable) from e
        if not admission.parts:
            return None
        at, out = 0, []
        for p in admission.parts:
            if p.start != at or p.end <= p.start:
                raise UploadFailed("UPLOAD_INCOMPLETE", f"the coordinator's parts do not tile the delta's {total} bytes")
            out.append((self._shard_stub(p.endpoint), p.start, p.end))
            at = p.end
        if at != total:
            raise UploadFailed("UPLOAD_INCOMPLETE", f"the coordinator's parts end at {at}, the delta at {total}")
        return out

    def _shard_stub(self, endpoint):
        """A stub for an aggregator shard's endpoint, whose certificate must carry the `aggregator`
        role (its subject's OU): a site or coordinator certificate is no shard. Python's gRPC has no
        hook to read the certificate of the channel it opens, so the role is checked on a TLS
        connection of its own first (a test agent's shortcut; the TypeScript agent checks the
        channel it uploads on). An endpoint without a host (`:7444`, a shard the coordinator runs on
        its own host) is on the host this agent dials the coordinator at."""
        if endpoint.startswith(":"):
            endpoint = self.address.rsplit(":", 1)[0] + endpoint
        if endpoint not in self.shards:
            host, port = endpoint.rsplit(":", 1)
            ctx = ssl.create_default_context(cafile=self.args.ca)
            ctx.load_cert_chain(self.args.cert, self.args.key)
            ctx.set_alpn_protocols(["h2"])
            with socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT_S) as sock, ctx.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
            roles = [a.value for a in x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
            if roles != ["aggregator"]:
                raise UploadFailed("SERVER_ROLE", f"{endpoint}'s certificate has role {roles} in its OU, not aggregator: it may not serve as an aggregator shard")
            channel = grpc.secure_channel(endpoint, self.creds, [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
            self.shards[endpoint] = (channel, self.pbg.SiteServiceStub(channel))
        return self.shards[endpoint][1]

    def _miss(self, t, delta, counts, why, report=True):
        """Work that will not count in its round: kept with its base and counts to fold into a later
        upload. With `report`, the site leaves the attempt at once (ReportFailure) so the round need
        not wait for its deadline; its secrets of the attempt go."""
        self.missed_rounds.add(t.round)
        record = {"runId": t.run_id, "round": t.round, "attempt": t.attempt, "base": t.global_model.sha256, "baseRound": t.model_round, "samples": counts["samples"], "tokens": counts["tokens"], "steps": counts["steps"]}
        self.fold.keep_missed(record, delta, why)
        if report:
            self.attempts.pop((t.run_id, t.round, t.attempt), None)
            self._fail((t.run_id, t.round, t.attempt), "DEADLINE_PASSED", f"round {t.round}'s delta missed its upload window: kept to fold into a later upload")

    def _drop(self, t):
        """Test behaviour: having shared, cut the connection as a crashed agent would (its secrets lost)."""
        self.dropped_rounds.add(t.round)
        self.attempts.clear()
        self.dropping = True
        self.dump.event("dropping", round=t.round, attempt=t.attempt)
        if self.tasks_call is not None:
            self.tasks_call.cancel()

    def _eval(self, t):
        self._receipt(t.run_id, t.model_round, t.model.sha256)
        self.activity = "evaluate"
        self._download(t.model.sha256, threading.Event())
        loss, samples = self.trainer.evaluate(t.model_round)
        self.stub.ReportEval(self.pb.EvalReport(run_id=t.run_id, model_round=t.model_round, model_sha256=t.model.sha256, loss=loss, samples=samples), timeout=CALL_TIMEOUT_S)
        self.dump.event("evaluated", model_round=t.model_round, loss=loss, final=True)

    def _finished(self, t):
        """The run finished without an evaluation: the task names the final model, so its round committed."""
        self._receipt(t.run_id, t.model_round, t.model.sha256)
        self.dump.event("finished", model_round=t.model_round)

    def _download(self, sha256, cancel):
        """Download (docs/protocol.md, "Part downloads"): the parts the coordinator names, each from
        its aggregator shard and all at once, or the whole file from the coordinator; chunks checked
        by CRC32C, asked again from the last good byte; the file by SHA-256."""
        path = os.path.join(self.models, f"{sha256}.safetensors")
        if os.path.exists(path):
            return open(path, "rb").read()
        self.activity = "download"
        ranges = self._download_parts(sha256) or [(self.stub, 0, 0)]
        out = [None] * len(ranges)
        errors = []

        def fetch(i, stub, start, end):
            try:
                out[i] = self._download_range(stub, sha256, start, end, cancel)
            except Exception as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=fetch, args=(i, *r), daemon=True) for i, r in enumerate(ranges)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        buf = b"".join(out)
        if hashlib.sha256(buf).hexdigest() != sha256:
            raise Refused("MODEL_CORRUPT", f"the downloaded model's SHA-256 is not {sha256}")
        with open(path + ".part", "wb") as fh:
            fh.write(buf)
        os.replace(path + ".part", path)
        self.dump.event("downloaded", sha256=sha256, bytes=len(buf), parts=[[r[1], r[2]] for r in ranges] if len(ranges) > 1 else [])
        return buf

    def _download_parts(self, sha256):
        """Where the model's parts come from: (stub, start, end) per aggregator shard the coordinator
        names, or None for the whole file from the coordinator."""
        try:
            admission = self.stub.AdmitDownload(self.pb.DownloadRequest(sha256=sha256), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as e:
            code, retryable, details = error_of(e)
            if code == "UNIMPLEMENTED":
                return None
            raise Refused(code, f"admission of the download of {sha256}: {details}") from e
        at, out = 0, []
        for p in admission.parts:
            if p.start != at or p.end <= p.start:
                raise Refused("MODEL_CORRUPT", "the coordinator's parts do not tile the model")
            out.append((self._shard_stub(p.endpoint), p.start, p.end))
            at = p.end
        return out or None

    def _download_range(self, stub, sha256, start, end, cancel):
        """Bytes [start, end) of the model (to its end for end 0) from `stub`, resumed after a break."""
        buf, failures, total = bytearray(), 0, (end - start if end else None)
        while total is None or len(buf) < total:
            if cancel.is_set():
                raise UploadFailed("CANCELLED", "cancelled during download")
            try:
                for chunk in stub.Download(self.pb.DownloadRequest(sha256=sha256, offset=start + len(buf), end=end), timeout=120):
                    if chunk.offset != start + len(buf) or fmt.crc32c(chunk.data) != chunk.crc32c:
                        failures += 1
                        self.dump.event("download-bad-chunk", offset=chunk.offset, expected=start + len(buf))
                        break
                    buf += chunk.data
                    if total is None:
                        total = chunk.total_bytes - start
                if total is None:
                    total = len(buf)
            except grpc.RpcError as e:
                code, retryable, details = error_of(e)
                failures += 1
                if not retryable:
                    raise Refused(code, f"download of {sha256} [{start}, {end or 'end'}): {details}") from e
                # NOT_ADMITTED: the leader's admission may still be on its way to the shard.
                time.sleep(min(0.05 * 2**failures, 1.0))
            if failures > 8:
                raise Refused("DOWNLOAD_FAILED", f"download of {sha256} [{start}, {end or 'end'}) failed {failures} times")
        return bytes(buf)

    # ------------------------------------------------------------------ receipts

    def _receipt(self, run_id, model_round, model_sha256):
        """Receipts: a task naming round R's model tells that R committed; sign what this site knows."""
        k = (run_id, model_round)
        if k not in self.contributions or k in self.receipted or not re.fullmatch(r"[0-9a-f]{64}", model_sha256):
            return
        parent, manifest, delta = self.contributions[k]
        # Since protocol version 6 a receipt declares the round's usage, signed (fedhpc-receipt-v2);
        # since version 12 it names the delta too (fedhpc-receipt-v3).
        u = USAGE
        payload = fmt.receipt_payload(self.federation, run_id, model_round, self.site, parent, model_sha256, manifest, u, delta)
        signature = sign_p256(self.signing_key, payload)
        usage = self.pb.RoundUsage(
            source=u["source"], gpus=u["gpus"], wall_ms=u["wallMs"], allocated_gpu_ms=u["allocatedGpuMs"], training_gpu_ms=u["trainingGpuMs"], jobs=u["jobs"], reason=u["reason"]
        )
        try:
            self.stub.SubmitReceipt(
                self.pb.RoundReceipt(
                    run_id=run_id, round=model_round, parent_sha256=parent, model_sha256=model_sha256, data_manifest_sha256=manifest, signature=signature, usage=usage,
                    delta_sha256=delta["sha256"], delta_parts=[self.pb.DeltaPartHash(start=p["start"], end=p["end"], sha256=p["sha256"]) for p in delta["parts"]],
                ),
                timeout=CALL_TIMEOUT_S,
            )
            self.receipted.add(k)
            self.dump.event("receipt", round=model_round, model=model_sha256, usage=u["source"])
            self.fold.settled(run_id, model_round, counted=True)
        except grpc.RpcError as e:
            code, _, details = error_of(e)
            if code != "UNAVAILABLE":
                self.receipted.add(k)
            self.dump.event("receipt-refused", round=model_round, code=code, details=details)
            if code == "NOT_INVITED":
                self.fold.settled(run_id, model_round, counted=False)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", required=True, action="append", help="a coordinator's HOST:PORT; several are tried in order")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--site", help="the site id (default: the certificate's CN)")
    ap.add_argument("--dump", required=True, help="folder for events, deltas and counts")
    ap.add_argument("--stubs", default=os.environ.get("FEDHPC_PY_STUBS"), help="generated stubs (default: generate now)")
    ap.add_argument("--seed", type=int, help="the trainer's seed (default: from the site id)")
    ap.add_argument("--samples", type=int, default=200, help="samples declared in round r: this + 37·r")
    ap.add_argument("--chunk-bytes", type=int, default=16 * 1024)
    ap.add_argument("--min-stripe-bytes", type=int, default=32 * 1024)
    ap.add_argument("--drop-at-upload", type=int, action="append", default=[], metavar="ROUND")
    ap.add_argument("--drop-pause", type=float, default=1.0, help="seconds offline after a drop")
    ap.add_argument("--cut-upload", action="append", default=[], metavar="ROUND:BYTES")
    ap.add_argument("--corrupt-upload", action="append", default=[], metavar="ROUND:crc|digest", help="one bad CRC32C or piece digest, once")
    ap.add_argument("--miss-window", type=int, action="append", default=[], metavar="ROUND", help="train ROUND, keep the work, report a failure instead of uploading")
    ap.add_argument("--refold", type=int, action="append", default=[], metavar="ROUND", help="fold again in ROUND the parts a committed round counted (refused: ALREADY_COUNTED)")
    ap.add_argument("--step-ms", type=float, default=5.0, help="the stand-in trainer's time per step")
    args = ap.parse_args(argv[1:])
    pb, pbg = load_stubs(args.stubs)
    agent = Agent(args, pb, pbg)
    signal.signal(signal.SIGTERM, agent.shutdown)
    signal.signal(signal.SIGINT, agent.shutdown)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
