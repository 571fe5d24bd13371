"""A tenant's statement as CSV (one row per line, for the tenant's accounts) and as a
printable PDF (fpdf2: a table per statement, the sources beneath), for ``estate
statements`` and the web view's ``/api/statements`` alike."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dispatch.dr.statements import MEMO, Statement

CSV_HEADER: Final = ("facility", "month", "section", "label", "quantity", "unit", "rate",
                     "amount", "currency", "source")
# The PDF's core fonts cover Latin-1: anything else a tenant's name holds is replaced.
_PDF_ENCODING: Final = "latin-1"


def statement_csv(statements: Sequence[Statement]) -> str:
    """Every line of every statement, and a total row per statement."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for s in statements:
        for line in s.lines:
            writer.writerow((s.facility, s.month, line.section, line.label,
                             f"{line.quantity:.3f}", line.unit,
                             "" if line.rate is None else f"{line.rate:.5f}",
                             f"{line.amount:.2f}", s.currency, line.source))
        writer.writerow((s.facility, s.month, "total", "total", "", "", "",
                         f"{s.total:.2f}", s.currency, "sum of the lines above but memo"))
    return out.getvalue()


def _latin(text: str) -> str:
    return text.encode(_PDF_ENCODING, "replace").decode(_PDF_ENCODING)


def _page(pdf: FPDF, s: Statement, estate_name: str) -> None:
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(text=_latin(f"{estate_name}: statement for {s.name}"), new_x=XPos.LMARGIN,
             new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(text=_latin(f"Tenant {s.facility}, month {s.month}, amounts in {s.currency}"),
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 9)
    with pdf.table(col_widths=(70, 30, 15, 30, 30), text_align=("LEFT", "RIGHT", "LEFT",
                                                                  "RIGHT", "RIGHT")) as table:
        header = table.row()
        for title in ("item", "quantity", "unit", "rate", "amount"):
            header.cell(title)
        for line in s.lines:
            row = table.row()
            label = f"({line.label})" if line.section == MEMO else line.label
            row.cell(_latin(label))
            row.cell(f"{line.quantity:,.2f}" if line.unit else "")
            row.cell(_latin(line.unit))
            row.cell("" if line.rate is None else f"{line.rate:,.4f}")
            row.cell(f"{line.amount:,.2f}")
        total = table.row()
        total.cell("Total", colspan=4)
        total.cell(f"{s.total:,.2f}")
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 7)
    for line in s.lines:
        if line.source:
            pdf.multi_cell(0, 3.5, _latin(f"{line.label}: {line.source}"), new_x=XPos.LMARGIN,
                           new_y=YPos.NEXT)


def statement_pdf(statements: Sequence[Statement], estate_name: str) -> bytes:
    """One page (or more) per statement."""
    pdf = FPDF(format="A4")
    pdf.set_title(_latin(f"{estate_name} statements"))
    pdf.set_auto_page_break(auto=True, margin=15)
    for s in statements:
        _page(pdf, s, estate_name)
    return bytes(pdf.output())


def write_statements(statements: Sequence[Statement], estate_name: str, directory: Path,
                     month: str) -> tuple[Path, Path]:
    """``statements-<month>.csv`` and ``.pdf`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / f"statements-{month}.csv"
    pdf_path = directory / f"statements-{month}.pdf"
    csv_path.write_text(statement_csv(statements), encoding="utf-8")
    pdf_path.write_bytes(statement_pdf(statements, estate_name))
    return csv_path, pdf_path
