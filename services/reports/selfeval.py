"""The 绩效自评表 of a self-evaluation (services.jobs.indicators.self_evaluate) as an xlsx workbook in the layout
of the seed tables, or as Markdown."""

from __future__ import annotations

from pathlib import Path

from analysis.scoring import STATUS_NO_TARGET

from ..jobs.indicators import SelfEvaluation
from .indicators import _fmt

SELFEVAL_HEADER_1 = ["一级指标", "二级指标", "三级指标", "分值", "年度指标值（A）", "", "", "实际完成值（B）",
                     "单项指标完成率(%)", "得分", "预警", "说明"]
SELFEVAL_HEADER_2 = ["", "", "", "", "符号", "值", "单位", "", "", "", "", ""]

def selfeval_xlsx(ev: SelfEvaluation, path: str | Path) -> Path:
    """The 绩效自评表 in the layout of the seed tables: 一级/二级/三级指标, 分值, 年度指标值 (符号 值 单位),
    实际完成值, 完成率, 得分; merged 一级/二级 cells; a 自评总得分 row. Values only, no formulas."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side

    wb = Workbook()
    ws = wb.active
    ws.title = "绩效自评表"
    thin = Side(style="thin")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    ncol = len(SELFEVAL_HEADER_1)
    ws.append([f"{ev.title} ({ev.unit_name} {ev.unit_code})"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncol)
    ws.cell(1, 1).font = Font(bold=True, size=14)
    ws.cell(1, 1).alignment = center
    ws.append(SELFEVAL_HEADER_1)
    ws.append(SELFEVAL_HEADER_2)
    for col in range(1, ncol + 1):
        if col not in (5, 6, 7):
            ws.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)
    ws.merge_cells(start_row=2, start_column=5, end_row=2, end_column=7)
    first = 4
    rows = ev.rows
    level1_weight = rows.groupby("一级指标", sort=False)["分值"].sum()
    for _, r in rows.iterrows():
        no_target = r["年度指标值"] is None or r["年度指标值"] != r["年度指标值"]
        ws.append([f"{r['一级指标']} ({level1_weight[r['一级指标']]:g})", r["二级指标"], r["三级指标"],
                   float(r["分值"]), r["符号"], STATUS_NO_TARGET if no_target else float(r["年度指标值"]), r["单位"],
                   None if r["实际完成值"] is None else float(r["实际完成值"]),
                   None if r["完成率"] is None else float(r["完成率"]),
                   STATUS_NO_TARGET if no_target else float(r["得分"]), r["预警"], r["说明"]])
    # merge runs of equal 一级 / 二级 cells, as the seed tables do
    for col, keys in ((1, ["一级指标"]), (2, ["一级指标", "二级指标"])):
        start = first
        for k in range(1, len(rows) + 1):
            end_of_run = k == len(rows) or any(rows.iloc[k][c] != rows.iloc[k - 1][c] for c in keys)
            if end_of_run:
                row_end = first + k - 1
                if row_end > start:
                    ws.merge_cells(start_row=start, start_column=col, end_row=row_end, end_column=col)
                start = row_end + 1
    ws.append(["自评总得分", "", "", float(ev.total_weight), "", "", "", None, None, float(ev.total), "",
               "" if ev.scored_weight is None else f"有目标的指标分值合计 {ev.scored_weight:g}, 总分按此计"])
    total_row = ws.max_row
    ws.merge_cells(start_row=total_row, start_column=1, end_row=total_row, end_column=3)
    for row in ws.iter_rows(min_row=2, max_row=total_row, max_col=ncol):
        for cell in row:
            cell.border = border
            cell.alignment = center
    for bold_row in (2, 3, total_row):
        for col in range(1, ncol + 1):
            ws.cell(bold_row, col).font = Font(bold=True)
    for letter, width in zip("ABCDEFGHIJKL", (14, 14, 26, 8, 6, 12, 8, 14, 12, 8, 20, 36)):
        ws.column_dimensions[letter].width = width
    info = wb.create_sheet("说明")
    info.append(["行政区", f"{ev.unit_name} ({ev.unit_code})"])
    info.append(["指标运行 run_id", ev.run_id])
    info.append(["评分规则", "正向: 得分 = 分值 × min(B/A, 1); 逆向: 得分 = 分值 × min(A/B, 1); 得分不超过分值; "
                         "A = 0 的正向指标 B ≥ 0 即满分; A = 0 的逆向指标 B = 0 满分, B > 0 记 0 分; B 缺失记 0 分"])
    for _, r in ev.rows.iterrows():
        if r.get("计分规则") and r["计分规则"] != "w × min(B/A, 1)":
            info.append(["评分规则", f"{r['三级指标']}: {r['计分规则']}"])
    for w in ev.warnings:
        info.append(["预警", f"{w['item']}: {w['label']}"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def selfeval_markdown(ev: SelfEvaluation) -> str:
    lines = [f"# {ev.title}", "", f"行政区: {ev.unit_name} ({ev.unit_code}); 指标运行: `{ev.run_id}`", "",
             "| 一级指标 | 二级指标 | 三级指标 | 分值 | 年度指标值（A） | 实际完成值（B） | 完成率(%) | 得分 | 预警 |",
             "|---|---|---|---:|---|---:|---:|---:|---|"]
    previous = (None, None)
    for _, r in ev.rows.iterrows():
        l1 = r["一级指标"] if r["一级指标"] != previous[0] else ""
        l2 = r["二级指标"] if (r["一级指标"], r["二级指标"]) != previous else ""
        previous = (r["一级指标"], r["二级指标"])
        no_target = r["年度指标值"] is None or r["年度指标值"] != r["年度指标值"]
        target = STATUS_NO_TARGET if no_target else f"{r['符号']} {_fmt(r['年度指标值'])} {r['单位']}".strip()
        score = STATUS_NO_TARGET if no_target else _fmt(r["得分"], 2)
        lines.append(f"| {l1} | {l2} | {r['三级指标']} | {_fmt(r['分值'])} | {target} | {_fmt(r['实际完成值'])} "
                     f"| {_fmt(r['完成率'])} | {score} | {r['预警']} |")
    out_of = "" if ev.scored_weight is None else f" (有目标的指标分值合计 {_fmt(ev.scored_weight)})"
    lines.append(f"| **自评总得分** | | | {_fmt(ev.total_weight)}{out_of} | | | | **{_fmt(ev.total, 2)}** | |")
    rules = [f"- {r['三级指标']}: {r['计分规则']}" for _, r in ev.rows.iterrows()
             if r.get("计分规则") and r["计分规则"] != "w × min(B/A, 1)"]
    if rules:
        lines += ["", "**计分规则**", "", *rules]
    if ev.warnings:
        lines += ["", "**预警**", ""]
        lines += [f"- {w['item']}: {w['label']}" for w in ev.warnings]
    lines += ["", "评分: 正向 得分 = 分值 × min(B/A, 1); 逆向 得分 = 分值 × min(A/B, 1); 得分不超过分值; "
              "边界情形见 docs/indicators.md。"]
    return "\n".join(lines) + "\n"
