"""The words a bill prints, chosen here so that templates only print: titles, labels, the not-a-fapiao note,
each line's kind, unit and tier-basis words. Light on purpose (no pandas): the PDF workers import it to give
documents issued before these words were recorded the words their templates printed then.

Our documents are not 发票 (docs/decisions.md): the VAT fapiao is issued on the tax platform. The words are
recorded on each new document, outside its content hash (documents.DERIVED_LINE_KEYS).
"""
from __future__ import annotations

LABELS = {
    "invoice": {"title_zh": "账单", "title_en": "BILL", "number": "账单号 Bill No.",
                "date": "账单日期 Date"},
    "credit_note": {"title_zh": "贷项通知单", "title_en": "CREDIT NOTE", "number": "通知单号 Credit note No.",
                    "date": "开具日期 Date"},
}
FAPIAO_NOTE = {
    "zh": "本单据不是发票. 增值税发票由销售方通过电子发票服务平台另行开具, 金额与本单一致.",
    "en": "This document is not a fapiao. The VAT fapiao is issued separately by the seller through the national "
          "e-invoice platform (电子发票服务平台), for the same amounts.",
}
CREDIT_FAPIAO_NOTE = {
    "zh": "本单据不是发票. 如原账单已开具增值税发票, 销售方将通过电子发票服务平台开具红字发票冲销.",
    "en": "This document is not a fapiao. Where a VAT fapiao was issued for the original bill, the seller reverses "
          "it with a red-letter (红字) fapiao through the national e-invoice platform.",
}
KIND_LABEL = {"opening": "开通 Opening", "addition": "加工号 Added seats", "renewal": "续费 Renewal"}


def basis_label(line: dict, tier_basis: str) -> str:
    """The words for the seat count that chose an addition's tier, from the price book's rule (not guessed
    from the numbers): 'by account total 12' or 'by 3 added seats'."""
    if line["kind"] != "addition":
        return ""
    if tier_basis == "added_seats":
        return f"按新增工号数 by {line['seats']} added seats"
    return f"按账户工号数 by account total {line['account_seats']}"


def _legacy_basis_label(line: dict) -> str:
    """What the template printed before the label was recorded (documents issued before it)."""
    if line["kind"] != "addition":
        return ""
    return ("按账户工号数 by account total " + str(line["account_seats"]) if line["account_seats"] != line["seats"]
            else "按新增工号 by added seats")


def unit_label(kind: str) -> str:
    """The price unit a line prints: per month for an addition, per year for an opening or renewal."""
    return " /月" if kind == "addition" else " /年"


def labels_for(kind: str) -> dict:
    """The printed title, number label and platform note of a bill or credit note."""
    note = CREDIT_FAPIAO_NOTE if kind == "credit_note" else FAPIAO_NOTE
    return {**LABELS[kind], "fapiao_note_zh": note["zh"], "fapiao_note_en": note["en"]}


def render_view(doc: dict) -> dict:
    """A document as templates read it: the labels recorded on it, or, for a document issued before they
    were, the words the templates printed then (no VAT split: that bill did not state one)."""
    if doc["kind"] not in LABELS:
        return doc
    view = dict(doc)
    view.setdefault("labels", labels_for(doc["kind"]))
    view.setdefault("vat", None)
    view["lines"] = [{"kind_label": KIND_LABEL[x["kind"]], "basis_label": _legacy_basis_label(x),
                      "unit_label": unit_label(x["kind"]), **x} for x in doc["lines"]]
    return view
