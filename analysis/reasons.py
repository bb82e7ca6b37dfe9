"""The 预判理由 of a record: the rule that gave its verdict, in words, with the numbers and the ids behind it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layers.codes import SANDIAO_CODES

from .rules import Rules


def pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def ids_text(ids: list[str], limit: int = 5) -> str:
    if not ids:
        return ""
    more = f" 等 {len(ids)} 件" if len(ids) > limit else ""
    return "、".join(ids[:limit]) + more


def limit_name(rules: Rules) -> str:
    """What an approval's date is compared with, in words."""
    return "后时相" if rules.approval_date_rule == "hsx" else "调查基准日"


@dataclass
class Facts:
    """Per-record measures the reason quotes (arrays of length n)."""

    area: np.ndarray
    cultivated: np.ndarray
    unclassified: np.ndarray
    unclassified_codes: list[list[str]]  # the codes behind `unclassified`, per record
    orig_dlbm: np.ndarray
    now_dlbm: np.ndarray
    unchanged_share: np.ndarray
    area_yjjbnt: np.ndarray
    area_stbhhx: np.ndarray
    area_outside: np.ndarray  # NaN when there is no czkfbj layer
    area_legal: np.ndarray
    area_all: np.ndarray
    area_compliant: np.ndarray
    share_legal: np.ndarray
    share_all: np.ndarray
    approval_ids: list[list[str]]
    late_ids: list[list[str]]


def verdict_reasons(f: Facts, flags: dict[str, np.ndarray], rules: Rules, basis: str) -> list[str]:
    """One sentence per record: the first rule that held (``flags``: small, same, legal, covered, partly), the
    approvals that did or did not count, then the facts (耕地, control lines, 原地类) and the 原地类 basis."""
    small, same, legal, covered, partly = (flags[k] for k in ("small", "same", "legal", "covered", "partly"))
    out = []
    for i in range(len(f.area)):
        if small[i]:
            text = (f"图斑面积 {f.area[i]:.2f} m² 小于最小面积 {rules.pseudo_min_area_m2:g} m²，"
                    "判为伪变化（其他）")
        elif same[i]:
            code = f.now_dlbm[i]
            text = (f"现状地类与原地类一致（{code} {SANDIAO_CODES.get(code, '')}，一致面积占 "
                    f"{pct(f.unchanged_share[i])} ≥ {pct(rules.unchanged_min_share or 0.0)}），地类未变化，"
                    "判为伪变化（其他）")
        elif legal[i]:
            text = (f"农转用/征收/供地批准范围覆盖 {f.area_legal[i]:.2f} m²，占 {pct(f.share_legal[i])} ≥ "
                    f"{pct(rules.legal_min_share)}（{ids_text(f.approval_ids[i])}），判为合法")
        elif covered[i]:
            text = (f"临时用地/设施农用地备案覆盖 {f.area_compliant[i]:.2f} m²，连同其他批准共覆盖 "
                    f"{pct(f.share_all[i])} ≥ {pct(rules.legal_min_share)}（{ids_text(f.approval_ids[i])}），"
                    "判为其他（合规用地）")
        elif partly[i]:
            text = (f"批准范围仅覆盖 {f.area_all[i]:.2f} m²（{pct(f.share_all[i])}，介于 "
                    f"{pct(rules.partial_min_share)}–{pct(rules.legal_min_share)}，{ids_text(f.approval_ids[i])}），"
                    f"超出批准范围 {f.area[i] - f.area_all[i]:.2f} m²，判为少批多占")
        else:
            text = ("无批准用地覆盖" if f.area_all[i] <= 0 else
                    f"批准范围仅覆盖 {pct(f.share_all[i])} < {pct(rules.partial_min_share)}"
                    f"（{ids_text(f.approval_ids[i])}）") + "，判为疑似未批先建"
        if (small[i] or same[i]) and f.approval_ids[i]:
            text += f"；另有批准范围覆盖 {pct(f.share_all[i])}（{ids_text(f.approval_ids[i])}）"
        if f.late_ids[i] and not small[i] and not same[i]:
            text += f"；批准日期晚于{limit_name(rules)}的 {ids_text(f.late_ids[i])} 未计入"
        facts = []
        if f.cultivated[i] > 0:
            facts.append(f"占耕地 {f.cultivated[i]:.2f} m²")
        if f.area_yjjbnt[i] > 0:
            facts.append(f"永久基本农田 {f.area_yjjbnt[i]:.2f} m²")
        if f.area_stbhhx[i] > 0:
            facts.append(f"生态保护红线内 {f.area_stbhhx[i]:.2f} m²")
        if not np.isnan(f.area_outside[i]) and f.area_outside[i] > 0.005:
            facts.append(f"城镇开发边界外 {f.area_outside[i]:.2f} m²")
        if f.unclassified[i] > 0:
            facts.append(f"{f.unclassified[i]:.2f} m² 原地类编码 {'、'.join(f.unclassified_codes[i])} 不在规则地类表内"
                         "（未分类）")
        if f.orig_dlbm[i]:
            facts.append(f"原地类 {f.orig_dlbm[i]} {SANDIAO_CODES.get(f.orig_dlbm[i], '')}")
        text += "；" + "，".join([*facts, basis]) if facts else "；" + basis
        out.append(text)
    return out
