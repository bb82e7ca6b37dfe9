"""The enforcement workflow applied to flagged patches: record a judgement, a move or a piece of evidence,
and read states, history, evidence and the audit log — on either store.

What a change means lives here; where it is kept lives in the store (layers.store.workflow: the tables
``workflow_state``, ``workflow_audit``, ``workflow_evidence`` and the mirror columns of ``flagged_patches``).
Which moves are allowed is data (analysis/workflow.yaml, checked by analysis.workflow.Workflow).

- The state table is the truth; the ``status`` / ``judgement`` / ``version`` columns of ``flagged_patches`` are
  a mirror written in the same transaction (so the OGC API and the indicators see them) and re-synchronised
  by :meth:`PatchWorkflow.sync_layer` after a re-analysis.
- A state row belongs to the patch whose JCBH equals its case_id / JCBH or that shares a source id with it
  (analysis.workflow.match_states), so statuses survive re-runs of ``yzt analyse``, re-issued rounds and
  different dedupe merges. ``yzt analyse`` carries the mirror columns over itself (analysis.records).
- Audit rows are chained (``prev_hash`` → ``hash``) by HMAC-SHA-256 under the service's audit key
  (:class:`AuditSeal`; the key is kept outside the store), and the chain's head — its last seq and hash — is
  sealed too, in the store (``workflow_head``) and in an anchor file beside the key. :meth:`verify_audit`
  finds a row edited, removed or inserted behind the service's back (a trigger dropped by hand), the last rows
  deleted, a head replayed from an older copy, a row re-hashed without the key, and a ``workflow_state`` row
  that disagrees with the audit row that last changed it. Rows written before the key (plain SHA-256, the
  older chain) are protected by the first keyed row after them, which seals their hash.
- Every change runs in ONE store transaction holding the store's writer lock: read the current version,
  refuse a stale one (StaleVersionError → 412), check the move, write state, mirror, evidence and audit row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.workflow import TransitionError, Workflow, load_workflow, match_states
from layers.errors import ConflictError, FieldError, NotFoundError
from layers.filelock import exclusive
from layers.store import Store, open_store, open_workflow_tables
from layers.store.query import And, Compare, Expr, In, Or, all_of
from layers.store.workflow import (
    AUDIT,
    AUDIT_COLUMNS,
    EVIDENCE,
    EVIDENCE_COLUMNS,
    HEAD,
    LAYER,
    STATE,
    STATE_COLUMNS,
    WorkflowTables,
    WorkflowTx,
)

from ..settings import Principal


class StaleVersionError(ConflictError):
    """If-Match names a version that is no longer current: somebody else changed the record first."""

    def __init__(self, message: str, current_version: int | None = None):
        super().__init__(message)
        self.current_version = current_version
        self.headers = {"ETag": f'"{current_version}"'} if current_version is not None else {}
        self.extra = {"current_version": current_version} if current_version is not None else {}


ACTIONS = ("judgement", "transition", "evidence")
GENESIS = "0" * 64


def now_utc() -> str:
    """UTC timestamps as fixed-width text: they sort as they compare."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _ids(text: Any) -> list[str]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return [str(text)]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


KEYED = "hmac-sha256:"  # the prefix of a keyed row hash; a bare 64-hex hash is the older, unkeyed chain


def _payload(prev_hash: str, row: dict) -> bytes:
    body = {k: row.get(k) for k in AUDIT_COLUMNS if k not in ("prev_hash", "hash")}
    return (prev_hash + "\n" + _json(body)).encode("utf-8")


def audit_hash(prev_hash: str, row: dict) -> str:
    """The unkeyed SHA-256 of a row (the chain before issue 12; still read, never written by a keyed seal)."""
    return hashlib.sha256(_payload(prev_hash, row)).hexdigest()


class AuditSeal:
    """The audit chain's key and the anchor file of its head (both outside the store).

    ``key`` None: the older unkeyed SHA-256 chain (store-level tools and tests); the service always passes a
    key (services/api: settings.audit_key / audit_key_file). ``anchor``: a JSON file {store url: {seq, hash}}
    holding the highest head this service has written — a copy of an older ``workflow_head`` row put back
    after deleting the rows since cannot fool it."""

    def __init__(self, key: bytes | None = None, anchor: Path | None = None):
        if key is not None and len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self.key, self.anchor = key, anchor

    @property
    def keyed(self) -> bool:
        return self.key is not None

    def row_hash(self, prev_hash: str, row: dict) -> str:
        if self.key is None:
            return audit_hash(prev_hash, row)
        return KEYED + hmac.new(self.key, _payload(prev_hash, row), hashlib.sha256).hexdigest()

    def head_mac(self, name: str, seq: int, hash_: str) -> str:
        assert self.key is not None
        return hmac.new(self.key, f"head\n{name}\n{int(seq)}\n{hash_}".encode(), hashlib.sha256).hexdigest()

    def read_anchor(self, url: str) -> dict | None:
        if self.anchor is None or not self.anchor.is_file():
            return None
        try:
            doc = json.loads(self.anchor.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"error": f"the anchor file {self.anchor} cannot be read"}
        return doc.get(url)

    def write_anchor(self, url: str, seq: int, hash_: str) -> None:
        """Record the head of ``url``'s chain if it is newer than the one recorded (several processes may write:
        the file only moves forward)."""
        if self.anchor is None:
            return
        self.anchor.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self.anchor):
            doc: dict = {}
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(self.anchor.read_text(encoding="utf-8"))
            old = doc.get(url) or {}
            if int(old.get("seq") or 0) >= int(seq):
                return
            doc[url] = {"seq": int(seq), "hash": hash_, "at": now_utc()}
            tmp = self.anchor.with_name(f".{self.anchor.name}.tmp")
            tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.anchor)


@dataclass
class PatchState:
    case_id: str
    JCBH: str
    source_ids: list[str]
    status: str
    judgement: str | None
    version: int
    note: str | None = None
    status_since: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None

    def brief(self) -> dict:
        return {"status": self.status, "judgement": self.judgement, "version": self.version}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome:
    state: PatchState
    audit: dict
    move: str | None  # the transition's name, None for evidence


def _audit_out(row: dict) -> dict:
    out = {"seq": int(row["seq"]), **{k: v for k, v in row.items() if k != "seq"}}
    for key in ("before", "after"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def _without_seq(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seq"}


class PatchWorkflow:
    """The workflow of the flagged patches of one store. Use :func:`open_patch_workflow`."""

    def __init__(self, tables: WorkflowTables, workflow: Workflow, seal: AuditSeal | None = None):
        self.tables = tables
        self.store = tables.store
        self.workflow = workflow
        self.seal = seal or AuditSeal()

    def close(self) -> None:
        self.tables.close()

    # --- reading -------------------------------------------------------------------------------------
    def states(self) -> pd.DataFrame:
        """Every workflow state row (one per case), oldest first."""
        rows = [_without_seq(r) for r in self.tables.select(STATE)]
        return pd.DataFrame(rows, columns=list(STATE_COLUMNS))

    def effective(self, patches: pd.DataFrame) -> pd.DataFrame:
        """``patches`` (JCBH, source_ids, status, judgement, version …) with the workflow columns taken from the
        state table where a case matches, plus case_id, note, updated_at, updated_by, status_since."""
        states = self.states()
        out = patches.copy()
        n = len(out)
        for col in ("case_id", "note", "updated_at", "updated_by", "status_since"):
            out[col] = np.array([None] * n, dtype=object)
        out["case_id"] = out["JCBH"].astype(object).to_numpy()  # a case untouched so far: its own JCBH
        if len(states) == 0 or n == 0:
            return out
        match = match_states(out["JCBH"].astype(str).tolist(), out["source_ids"].tolist(),
                             states["case_id"].tolist(), states["JCBH"].tolist(), states["source_ids"].tolist(),
                             states["updated_at"].fillna("").tolist())
        hit = match >= 0
        if hit.any():
            src = states.iloc[match[hit]]
            for col in ("status", "judgement", "version", "case_id", "note", "updated_at", "updated_by",
                        "status_since"):
                values = out[col].to_numpy(dtype=object).copy() if col in out.columns else \
                    np.array([None] * n, dtype=object)
                values[hit] = src[col].to_numpy(dtype=object)
                out[col] = values
        out["version"] = pd.to_numeric(out["version"], errors="coerce").fillna(1).astype(int)
        return out

    def history(self, case_ids: list[str], jcbh: list[str] | None = None) -> list[dict]:
        """Audit rows of a case (all its case ids and JCBHs), oldest first."""
        keys = tuple(k for k in dict.fromkeys([*case_ids, *(jcbh or [])]) if k)
        if not keys:
            return []
        return [_audit_out(r) for r in self.tables.select(AUDIT, Or(In("case_id", keys), In("JCBH", keys)))]

    def audit(self, *, user: str | None = None, jcbh: str | None = None, action: str | None = None,
              since: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
        """Audit rows (newest first) with optional filters, and how many match."""
        conds: list[Expr] = []
        if user:
            conds.append(Compare("user", "=", user))
        if jcbh:
            conds.append(Or(Compare("JCBH", "=", jcbh), Compare("case_id", "=", jcbh)))
        if action:
            conds.append(Compare("action", "=", action))
        if since:
            conds.append(Compare("at", ">=", since))
        where = all_of(conds)
        total = self.tables.count(AUDIT, where)
        rows = self.tables.select(AUDIT, where, newest_first=True, limit=limit, offset=offset)
        return [_audit_out(r) for r in rows], total

    def evidence(self, case_ids: list[str]) -> list[dict]:
        keys = tuple(k for k in dict.fromkeys(case_ids) if k)
        if not keys:
            return []
        return [_without_seq(r) for r in self.tables.select(EVIDENCE, In("case_id", keys))]

    def evidence_item(self, evidence_id: str) -> dict:
        rows = self.tables.select(EVIDENCE, Compare("evidence_id", "=", evidence_id))
        if not rows:
            raise NotFoundError(f"evidence {evidence_id!r} does not exist")
        return _without_seq(rows[0])

    def verify_audit(self) -> dict:
        """Check the audit chain, its head and the state table against it: {rows, ok, first_bad_seq, reason,
        keyed, head_seq, anchored, states}. ``first_bad_seq``: the first row found wrong (or the row after
        the last one left, when rows were deleted from the end)."""
        with self.tables.transaction() as tx:  # one snapshot of the three tables
            rows = tx.select(AUDIT)
            heads = tx.select(HEAD) if HEAD in tx.has_tables() else []
            states = tx.select(STATE)
        out = {"rows": len(rows), "ok": True, "first_bad_seq": None, "reason": None, "keyed": False,
               "head_seq": None, "anchored": False, "states": len(states)}

        def bad(seq: int | None, reason: str) -> dict:
            return {**out, "ok": False, "first_bad_seq": seq, "reason": reason}

        prev, keyed_from = GENESIS, None
        for r in rows:
            seq, hash_ = int(r["seq"]), str(r["hash"] or "")
            if r["prev_hash"] != prev:
                return bad(seq, f"row {seq} does not follow the row before it (a row was removed, inserted or "
                                "reordered)")
            if hash_.startswith(KEYED):
                if not self.seal.keyed:
                    return bad(seq, f"row {seq} is sealed with the audit key, which this check was not given; "
                                    "verify with the service's audit key (settings.audit_key_file)")
                if not hmac.compare_digest(self.seal.row_hash(prev, r), hash_):
                    return bad(seq, f"row {seq} was altered after it was written (its seal does not match)")
                keyed_from = keyed_from or seq
            else:
                if keyed_from is not None:
                    return bad(seq, f"row {seq} carries an unkeyed hash where the chain is sealed with the audit "
                                    "key: it was written or re-hashed without the key")
                if audit_hash(prev, r) != hash_:
                    return bad(seq, f"row {seq} was altered after it was written")
            prev = hash_
        out["keyed"] = keyed_from is not None
        last_seq, last_hash = (int(rows[-1]["seq"]), str(rows[-1]["hash"])) if rows else (0, GENESIS)
        head = next((h for h in heads if h["name"] == "audit"), None)
        if self.seal.keyed and (keyed_from is not None or head is not None):
            if head is None:
                return bad(last_seq + 1, "the head of the audit chain (workflow_head) is missing: it was deleted, "
                                         "perhaps with the last rows of the log")
            hseq, hhash = int(head["seq"] or 0), str(head["hash"] or "")
            out["head_seq"] = hseq
            if not hmac.compare_digest(self.seal.head_mac("audit", hseq, hhash), str(head["mac"] or "")):
                return bad(min(hseq, last_seq + 1), "the head of the audit chain was altered or forged (its seal "
                                                    "does not match)")
            if hseq > last_seq:
                return bad(last_seq + 1, f"rows {last_seq + 1}…{hseq} were deleted: the log ends at row {last_seq}, "
                                         f"its sealed head is row {hseq}")
            if hseq != last_seq or hhash != last_hash:
                return bad(hseq + 1 if hseq < last_seq else hseq,
                           f"the log goes on past its sealed head (row {hseq}): rows {hseq + 1}…{last_seq} were "
                           "added without the key" if hseq < last_seq else f"row {hseq} is not the sealed head")
        anchor = self.seal.read_anchor(self.store.url)
        if anchor is not None:
            if "error" in anchor:
                return bad(None, anchor["error"])
            aseq, ahash = int(anchor["seq"]), str(anchor["hash"])
            held = next((r for r in rows if int(r["seq"]) == aseq), None)
            if held is None:
                return bad(min(aseq, last_seq + 1), f"row {aseq}, the head recorded in the anchor file "
                                                    f"{self.seal.anchor}, is gone: rows were deleted and an older "
                                                    "head put back")
            if str(held["hash"]) != ahash:
                return bad(aseq, f"row {aseq} differs from the head recorded in the anchor file {self.seal.anchor}")
            out["anchored"] = True
        # the state table: each case as its last audit row left it, and no case without its audit rows
        last_of: dict[str, dict] = {}
        for r in rows:
            if r["case_id"]:
                last_of[str(r["case_id"])] = r
        seen = set()
        for st in states:
            case = str(st["case_id"])
            seen.add(case)
            a = last_of.get(case)
            if a is None:
                return bad(None, f"workflow_state holds case {case} (status {st['status']}) that no audit row "
                                 "records: it was written behind the service's back")
            have = (st["status"], st["judgement"] or None, int(st["version"]))
            want = (a["to_status"], a["to_judgement"] or None, int(a["version_after"]))
            if have != want:
                return bad(int(a["seq"]), f"workflow_state of case {case} says status {have[0]}, judgement "
                                          f"{have[1]}, version {have[2]}; its last audit row {a['seq']} says "
                                          f"{want[0]}, {want[1]}, {want[2]}: the state was edited behind the "
                                          "service's back")
        missing = sorted(set(last_of) - seen)
        if missing:
            return bad(int(last_of[missing[0]]["seq"]), f"workflow_state has no row for case {missing[0]}, which "
                                                        "the audit log records: it was deleted")
        return out

    # --- writing -------------------------------------------------------------------------------------
    def apply(self, jcbh: str, expected_version: int, who: Principal, action: str, *, to: str | None = None,
              judgement: str | None = None, note: str | None = None, evidence: dict | None = None) -> Outcome:
        """Record one change on patch ``jcbh`` atomically; StaleVersionError if ``expected_version`` is not
        current, TransitionError / RoleError / FieldError if the workflow refuses the move."""
        if action not in ACTIONS:
            raise ValueError(f"action {action!r}")
        note = (note or "").strip() or None
        with self.tables.transaction(write=True) as tx:
            layer_row = tx.patch_row(jcbh)
            if layer_row is None:
                raise NotFoundError(f"patch {jcbh!r} is not in {LAYER} (neither as JCBH nor as a merged source id)")
            current = self._current_state(tx, layer_row)
            if int(expected_version) != current.version:
                raise StaleVersionError(
                    f"patch {current.JCBH} is at version {current.version}, not {expected_version}: "
                    f"{current.updated_by or 'someone'} changed it at {current.updated_at or 'an earlier time'}; "
                    "reload it (GET /api/patches/…), check the change, and retry with its ETag",
                    current_version=current.version)
            stamp = now_utc()
            before = current.brief()
            move_name = None
            new = PatchState(**{**current.as_dict(), "JCBH": layer_row["JCBH"],
                                "source_ids": _ids(layer_row["source_ids"])})
            if action == "evidence":
                if not evidence:
                    raise ValueError("evidence metadata missing")
            else:
                target = to
                if action == "judgement":
                    judging = self.workflow.judgement_move(current.status)
                    if judging is None:
                        moves = "; ".join(f"{t.source} → {t.target}" for t in self.workflow.transitions
                                          if t.judgement == "required")
                        raise TransitionError(f"patch {current.JCBH} is {current.status}: a judgement cannot be "
                                              f"recorded in this status (judgements are recorded by: {moves})")
                    target = judging.target
                n_evidence = self._evidence_since(tx, current)
                if target is None:
                    raise FieldError("a transition needs the status to move to (to)")
                move = self.workflow.check(status=current.status, judgement=current.judgement, to=target,
                                           new_judgement=judgement, role=who.role, note=note,
                                           evidence_count=n_evidence, patch=f"patch {current.JCBH}")
                move_name = move.name
                new.judgement = self.workflow.next_judgement(move, current.judgement, judgement)
                if move.target != current.status:
                    new.status_since = stamp
                new.status = move.target
            new.version = current.version + 1
            new.note = note if action != "evidence" else current.note
            new.updated_at, new.updated_by = stamp, who.user
            tx.upsert_state({**new.as_dict(), "source_ids": _json(new.source_ids)})
            self._mirror(tx, new)
            if evidence:
                tx.append(EVIDENCE, {**{k: None for k in EVIDENCE_COLUMNS}, **evidence, "case_id": new.case_id,
                                     "JCBH": new.JCBH, "uploaded_at": stamp, "uploaded_by": who.user})
            audit_row = {
                "at": stamp, "user": who.user, "role": who.role, "action": action, "case_id": new.case_id,
                "JCBH": new.JCBH, "from_status": current.status, "to_status": new.status,
                "from_judgement": current.judgement, "to_judgement": new.judgement,
                "version_before": current.version, "version_after": new.version, "note": note,
                "evidence_id": evidence["evidence_id"] if evidence else None,
                "before": _json(before), "after": _json({**new.brief(), **({"move": move_name} if move_name else {}),
                                                         **({"evidence": evidence} if evidence else {})}),
            }
            last = tx.select(AUDIT, newest_first=True, limit=1)
            prev_hash = str(last[0]["hash"]) if last else GENESIS
            audit_row["prev_hash"] = prev_hash
            row_hash = self.seal.row_hash(prev_hash, audit_row)
            audit_row["hash"] = row_hash
            seq = tx.append(AUDIT, audit_row)
            if self.seal.keyed:
                tx.put_head({"name": "audit", "seq": seq, "hash": row_hash, "at": stamp,
                             "mac": self.seal.head_mac("audit", seq, row_hash)})
        self.seal.write_anchor(self.store.url, seq, row_hash)  # after the commit: never ahead of it
        return Outcome(new, _audit_out({"seq": seq, **audit_row}), move_name)

    def sync_layer(self) -> int:
        """Write the state table's status / judgement / version onto the flagged_patches rows that disagree
        (after a re-analysis raced with a change). Returns the number of rows corrected."""
        if STATE not in self.tables.has_tables() or LAYER not in self.store.layer_names():
            return 0
        layer = pd.DataFrame(self.store.read_layer(LAYER, columns=["JCBH", "source_ids", "status", "judgement",
                                                                   "version"]).drop(columns="geometry"))
        eff = self.effective(layer)
        diff = (eff["status"].astype(str).to_numpy() != layer["status"].astype(str).to_numpy()) | \
               (eff["judgement"].fillna("").astype(str).to_numpy() != layer["judgement"].fillna("").astype(str)
                .to_numpy()) | (eff["version"].astype(int).to_numpy() !=
                                pd.to_numeric(layer["version"], errors="coerce").fillna(0).astype(int).to_numpy())
        if not diff.any():
            return 0
        with self.tables.transaction(write=True) as tx:
            for _, r in eff[diff].iterrows():
                tx.mirror(r["JCBH"], r["status"], r["judgement"], int(r["version"]))
        return int(diff.sum())

    # --- pieces of a change ----------------------------------------------------------------------------
    def _current_state(self, tx: WorkflowTx, layer_row: dict) -> PatchState:
        ids = [layer_row["JCBH"], *_ids(layer_row["source_ids"])]
        rows = tx.states_for(layer_row["JCBH"], ids)
        if rows:
            order = [r.get("updated_at") or "" for r in rows]
            i = match_states([layer_row["JCBH"]], [ids], [r["case_id"] for r in rows], [r["JCBH"] for r in rows],
                             [r["source_ids"] for r in rows], order)[0]
            if i >= 0:
                r = rows[i]
                return PatchState(case_id=r["case_id"], JCBH=r["JCBH"], source_ids=_ids(r["source_ids"]),
                                  status=r["status"], judgement=r["judgement"], version=int(r["version"]),
                                  note=r["note"], status_since=r["status_since"], updated_at=r["updated_at"],
                                  updated_by=r["updated_by"])
        version = layer_row.get("version")
        status = layer_row.get("status") or self.workflow.initial
        return PatchState(case_id=layer_row["JCBH"], JCBH=layer_row["JCBH"], source_ids=_ids(layer_row["source_ids"]),
                          status=status, judgement=layer_row.get("judgement") or None,
                          version=int(version) if version is not None else 1)

    @staticmethod
    def _evidence_since(tx: WorkflowTx, state: PatchState) -> int:
        where: Expr = Compare("case_id", "=", state.case_id)
        if state.status_since:
            where = And(where, Compare("uploaded_at", ">=", state.status_since))
        return tx.count(EVIDENCE, where)

    def _mirror(self, tx: WorkflowTx, s: PatchState) -> None:
        tx.mirror(s.JCBH, s.status, s.judgement, s.version)


def open_patch_workflow(target: str | Path | Store, workflow: Workflow | None = None,
                        seal: AuditSeal | None = None) -> PatchWorkflow:
    """The workflow of the flagged patches in the store at ``target`` (a path, a URL or a Store);
    ``workflow`` None → the packaged analysis/workflow.yaml; ``seal`` None → the unkeyed chain."""
    store = open_store(target)
    return PatchWorkflow(open_workflow_tables(store), workflow if workflow is not None else load_workflow(), seal)
