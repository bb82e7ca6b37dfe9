"""Charts for reports (PNG / SVG) from an indicator run, with Chinese labels in a CJK font.

matplotlib runs headless (Agg). A CJK font is required: the first of PREFERRED_FONTS found under the font
folders is registered with matplotlib; without one, :func:`cjk_font` raises — a chart with tofu boxes (□)
instead of 乡镇 names must never be written. Every label is also checked glyph by glyph against the font.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text

from analysis.balance import AREA_UNITS
from layers.errors import NotFoundError, YztError

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
             os.path.expanduser("~/.local/share/fonts"))
# (file name, family inside it), best first. Noto CJK .ttc files hold SC/TC/JP/KR faces; SC is wanted.
PREFERRED_FONTS = (
    ("NotoSansCJK-Regular.ttc", "Noto Sans CJK SC"),
    ("NotoSansCJKsc-Regular.otf", "Noto Sans CJK SC"),
    ("NotoSerifCJK-Regular.ttc", "Noto Serif CJK SC"),
    ("wqy-microhei.ttc", "WenQuanYi Micro Hei"),
    ("wqy-zenhei.ttc", "WenQuanYi Zen Hei"),
    ("SourceHanSansSC-Regular.otf", "Source Han Sans SC"),
    ("simhei.ttf", "SimHei"),
)


class FontError(YztError, RuntimeError):
    """No font able to draw Chinese text is installed."""


@dataclass(frozen=True)
class CJKFont:
    path: str
    family: str


_FOUND: dict[str, CJKFont] = {}  # the font of FONT_DIRS, once found


def cjk_font(dirs=FONT_DIRS) -> CJKFont:
    """Find and register a CJK font with matplotlib (once); FontError if there is none."""
    if "default" in _FOUND and dirs == FONT_DIRS:
        return _FOUND["default"]
    found: dict[str, str] = {}
    for base in dirs:
        if not os.path.isdir(base):
            continue
        for root, _dirs, files in os.walk(base):
            for name in files:
                found.setdefault(name, os.path.join(root, name))
    for filename, family in PREFERRED_FONTS:
        if filename in found:
            font_manager.fontManager.addfont(found[filename])
            names = {f.name for f in font_manager.fontManager.ttflist if f.fname == found[filename]}
            if family not in names:  # a single-face file: take the family it declares
                family = FT2Font(found[filename]).family_name
            font = CJKFont(found[filename], family)
            if dirs == FONT_DIRS:
                _FOUND["default"] = font
            return font
    raise FontError("no CJK font found (looked for " + ", ".join(f for f, _ in PREFERRED_FONTS) +
                    f" under {', '.join(dirs)}); install fonts-noto-cjk (apt-get install fonts-noto-cjk) — "
                    "charts are not drawn without one, to avoid □ boxes instead of Chinese labels")


def check_glyphs(font: CJKFont, texts) -> None:
    """Raise FontError if any character of ``texts`` has no glyph in the font (it would print as □)."""
    ft = FT2Font(font.path)
    missing = sorted({ch for t in texts for ch in str(t) if not ch.isspace() and ord(ch) > 127
                      and ft.get_char_index(ord(ch)) == 0})
    if missing:
        raise FontError(f"font {font.family!r} ({font.path}) has no glyph for {''.join(missing)!r}; "
                        "install a fuller CJK font (fonts-noto-cjk)")


def _style(font: CJKFont) -> dict:
    return {"font.family": [font.family], "font.sans-serif": [font.family, "DejaVu Sans"],
            "axes.unicode_minus": False, "svg.fonttype": "path"}


def _save(fig, path: Path, font: CJKFont) -> Path:
    fig.canvas.draw()  # creates the tick labels
    check_glyphs(font, [t.get_text() for t in fig.findobj(Text)])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata=None if path.suffix == ".svg" else {"Software": None})
    plt.close(fig)
    return path


def _by_level(values: pd.DataFrame, level: str, codes: list[str], area_unit: str) -> pd.DataFrame:
    """One row per unit of ``level`` (unit_code, unit_name), one column per indicator of ``codes``: areas in
    ``area_unit``, other indicators as rounded."""
    sub = values[(values["level"] == level) & (values["indicator"].isin(codes))]
    if len(sub) == 0:
        return pd.DataFrame()
    shown = sub[f"value_{area_unit}"].where(sub["unit"] == "m2", sub["value_rounded"])
    table = sub.assign(shown=shown.astype(float)).pivot(index=["unit_code", "unit_name"], columns="indicator",
                                                        values="shown")
    return table[[c for c in codes if c in table.columns]].reset_index()


def _stacked_by_township(plt, t: pd.DataFrame, codes: list[str], names: dict, colors: dict, title: str):
    """One stacked bar per 乡镇 (``t``: unit_name + one column per code), legend outside on the right."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = pd.Series(0.0, index=t.index)
    for c in codes:
        ax.bar(t["unit_name"], t[c], bottom=bottom, label=names[c], color=colors[c])
        bottom = bottom + t[c].fillna(0)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig, ax


def _bar_labels(ax, bars, fmt):
    for bar in bars:
        h = bar.get_height()
        ax.annotate(fmt(h), (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")


def draw_charts(run, out_dir: str | Path, *, fmt: str = "png", area_unit: str = "ha",
                conflicts: pd.DataFrame | None = None) -> list[Path]:
    """Draw the chart set of a run into ``out_dir``; returns the files written.

    cultivated_by_township: 耕地面积 by 乡镇; land_categories_by_township: 农用地/建设用地/未利用地 by 乡镇;
    verdicts_by_township: pre-judgement verdict counts by 乡镇; conflicts_by_kind: planning conflict area by kind
    (from ``conflicts``, the planning_conflicts layer of the same store, when given).
    """
    if fmt not in ("png", "svg"):
        raise YztError(f"chart format {fmt!r} is unknown; use png or svg")
    font = cjk_font()
    unit_zh = AREA_UNITS[area_unit][1]
    out_dir = Path(out_dir)
    values = run.values
    written: list[Path] = []
    county = values[values["level"] == "county"]
    county_name = str(county["unit_name"].iloc[0]) if len(county) else ""
    footer = f"run {run.run_id[:12]} · 面积为椭球面积, 已强制调平"

    with plt.rc_context(_style(font)):
        # 1. 耕地面积 by 乡镇
        t = _by_level(values, "township", ["cultivated_area"], area_unit)
        if len(t):
            fig, ax = plt.subplots(figsize=(8, 4.5))
            bars = ax.bar(t["unit_name"], t["cultivated_area"], color="#4c9a2a")
            _bar_labels(ax, bars, lambda v: f"{v:,.2f}")
            title = f"{county_name} 各乡镇耕地面积"
            ax.set_title(title)
            ax.set_ylabel(f"耕地面积 ({unit_zh})")
            ax.set_xlabel("乡镇")
            fig.text(0.01, -0.02, "口径: DLBM ∈ {0101, 0102, 0103} 的图斑地类面积 TBDLMJ 之和 (扣除田坎); " + footer,
                     fontsize=7)
            written.append(_save(fig, out_dir / f"cultivated_by_township.{fmt}", font))

        # 2. three land categories by 乡镇 (stacked)
        codes = ["agricultural_area", "construction_area", "unused_area"]
        names = {"agricultural_area": "农用地", "construction_area": "建设用地", "unused_area": "未利用地"}
        colors = {"agricultural_area": "#7fb069", "construction_area": "#d1495b", "unused_area": "#c2b280"}
        t = _by_level(values, "township", codes, area_unit)
        if len(t) and all(c in t.columns for c in codes):
            fig, ax = _stacked_by_township(plt, t, codes, names, colors, f"{county_name} 各乡镇三大地类面积")
            ax.set_ylabel(f"面积 ({unit_zh})")
            fig.text(0.01, -0.02, "口径: 图斑地类面积 TBDLMJ, 田坎计入农用地; " + footer, fontsize=7)
            written.append(_save(fig, out_dir / f"land_categories_by_township.{fmt}", font))

        # 3. verdict counts by 乡镇 (stacked)
        codes = ["verdict_legal_count", "verdict_partly_approved_count", "verdict_suspected_illegal_count",
                 "verdict_other_count"]
        names = {"verdict_legal_count": "合法", "verdict_partly_approved_count": "少批多占",
                 "verdict_suspected_illegal_count": "未批先建", "verdict_other_count": "其他"}
        colors = {"verdict_legal_count": "#2a9d8f", "verdict_partly_approved_count": "#e9c46a",
                  "verdict_suspected_illegal_count": "#e76f51", "verdict_other_count": "#8d99ae"}
        t = _by_level(values, "township", codes, area_unit)
        if len(t) and all(c in t.columns for c in codes):
            fig, ax = _stacked_by_township(plt, t, codes, names, colors, f"{county_name} 各乡镇监测图斑预判结论")
            ax.set_ylabel("图斑数 (个)")
            ax.yaxis.get_major_locator().set_params(integer=True)
            fig.text(0.01, -0.02, "口径: 去重后的监测图斑, 按最大面积所在村归属; " + footer, fontsize=7)
            written.append(_save(fig, out_dir / f"verdicts_by_township.{fmt}", font))

        # 4. planning conflicts by kind
        if conflicts is not None and len(conflicts):
            label_col = "kind_zh" if "kind_zh" in conflicts.columns else "kind"
            factor = float(AREA_UNITS[area_unit][0])
            by_kind = (conflicts.groupby(conflicts[label_col].astype(str))["area_m2"].sum() * factor).sort_values()
            fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(by_kind) + 1.2)))
            bars = ax.barh(by_kind.index, by_kind.to_numpy(), color="#6d597a")
            for bar, v in zip(bars, by_kind.to_numpy()):
                ax.annotate(f"{v:,.2f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center",
                            fontsize=8, xytext=(3, 0), textcoords="offset points")
            title = f"{county_name} 规划冲突面积 (按类型)"
            ax.set_title(title)
            values_ = by_kind.to_numpy()
            positive = values_[values_ > 0]
            if len(positive) and positive.max() / positive.min() > 100:  # one kind dwarfs the others
                ax.set_xscale("log")
                ax.set_xlabel(f"面积 ({unit_zh}, 对数刻度)")
            else:
                ax.set_xlabel(f"面积 ({unit_zh})")
            fig.text(0.01, -0.02, "口径: planning_conflicts 各类冲突图斑椭球面积之和; " + footer, fontsize=7)
            written.append(_save(fig, out_dir / f"conflicts_by_kind.{fmt}", font))
    if not written:
        raise NotFoundError(f"run {run.run_id} has no township values to chart; check the xzq layer")
    return written


# --- a province roll-up: the same charts by 市 and by 县 --------------------------------------------------------

REGION_LEVEL_ZH = {"city": "市", "county": "县"}


def draw_region_charts(run, out_dir: str | Path, *, fmt: str = "png", area_unit: str = "ha") -> list[Path]:
    """Per level (市, 县) of a province roll-up (services/jobs/region.RollupRun): 耕地面积, 三大地类 and the
    pre-judgement verdicts by unit — ``cultivated_by_city.png``, ``land_categories_by_county.png`` …"""
    if fmt not in ("png", "svg"):
        raise YztError(f"chart format {fmt!r} is unknown; use png or svg")
    font = cjk_font()
    unit_zh = AREA_UNITS[area_unit][1]
    out_dir = Path(out_dir)
    values = run.values
    top = values[values["level"].isin(["province", "city"])].sort_values("level", key=lambda s: s != "province")
    region_name = str(top["unit_name"].iloc[0]) if len(top) else ""
    footer = f"roll-up {run.run_id[:12]} · 面积为椭球面积, 省→市→县→乡→村强制调平"
    written: list[Path] = []
    land = (["agricultural_area", "construction_area", "unused_area"],
            {"agricultural_area": "农用地", "construction_area": "建设用地", "unused_area": "未利用地"},
            {"agricultural_area": "#7fb069", "construction_area": "#d1495b", "unused_area": "#c2b280"})
    verdicts = (["verdict_legal_count", "verdict_partly_approved_count", "verdict_suspected_illegal_count",
                 "verdict_other_count"],
                {"verdict_legal_count": "合法", "verdict_partly_approved_count": "少批多占",
                 "verdict_suspected_illegal_count": "未批先建", "verdict_other_count": "其他"},
                {"verdict_legal_count": "#2a9d8f", "verdict_partly_approved_count": "#e9c46a",
                 "verdict_suspected_illegal_count": "#e76f51", "verdict_other_count": "#8d99ae"})
    with plt.rc_context(_style(font)):
        for level, zh in REGION_LEVEL_ZH.items():
            t = _by_level(values, level, ["cultivated_area"], area_unit)
            if len(t):
                fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(t) + 2), 4.5))
                bars = ax.bar(t["unit_name"], t["cultivated_area"], color="#4c9a2a")
                _bar_labels(ax, bars, lambda v: f"{v:,.2f}")
                ax.set_title(f"{region_name} 各{zh}耕地面积")
                ax.set_ylabel(f"耕地面积 ({unit_zh})")
                ax.set_xlabel(zh)
                rule = "口径: DLBM ∈ {0101, 0102, 0103} 的图斑地类面积 TBDLMJ 之和 (扣除田坎); "
                fig.text(0.01, -0.02, rule + footer, fontsize=7)
                written.append(_save(fig, out_dir / f"cultivated_by_{level}.{fmt}", font))
            for stem, (codes, names, colors), title, ylabel in (
                    ("land_categories", land, "三大地类面积", f"面积 ({unit_zh})"),
                    ("verdicts", verdicts, "监测图斑预判结论", "图斑数 (个)")):
                t = _by_level(values, level, codes, area_unit)
                if len(t) and all(c in t.columns for c in codes):
                    fig, ax = _stacked_by_township(plt, t, codes, names, colors, f"{region_name} 各{zh}{title}")
                    ax.set_ylabel(ylabel)
                    fig.text(0.01, -0.02, footer, fontsize=7)
                    written.append(_save(fig, out_dir / f"{stem}_by_{level}.{fmt}", font))
    if not written:
        raise NotFoundError(f"roll-up {run.run_id} has no 市 / 县 values to chart")
    return written
