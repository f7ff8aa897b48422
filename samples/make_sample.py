"""Builds samples/roster.xlsx: a realistic reseller roster for the billing month 2026-10.

Every rule of the price sheet is exercised at least once (see the `why` column, which the invoicer reports
as an extra column and ignores), and a few rows are deliberately bad. Run it from the repository root:
    .venv/bin/python samples/make_sample.py
The workbook is committed; tests/golden compares a run over it with samples/expected/.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from openpyxl import Workbook

D = dt.date

RESELLER = [
    ("name", "深圳市腾云信息技术有限公司"),
    ("tax_id", "91440300MA5EXAMPLE"),
    ("address", "深圳市南山区科技园科苑路15号"),
    ("phone", "0755-8888 6666"),
    ("bank", "招商银行深圳科技园支行 7559 0000 1234 567"),
    ("invoice_prefix", "SZTY"),
]

# customer_id, name, opened_on, seats, paid_through, legacy_rate, qq_number, email, address, tax_id, why
CUSTOMERS = [
    ("C001", "北京星辰科技有限公司", D(2026, 10, 1), 5, None, None, "4006881234", "finance@xingchen.cn",
     "北京市海淀区中关村大街1号", "91110108MA01XC0004", "opening, tier 3-10"),
    ("C002", "上海浦江贸易有限公司", D(2026, 10, 15), 12, None, None, None, "ap@pujiang.com",
     "上海市黄浦区南京东路100号", None, "opening, tier 11-20"),
    ("C003", "广州珠江物流集团", "2026/10/20", 25, None, None, "8001234567", None, "广州市天河区珠江新城",
     None, "opening, tier 21-50, text date"),
    ("C004", "杭州西湖电子商务有限公司", D(2026, 5, 1), 5, None, None, None, None, "杭州市西湖区文三路", None,
     "price sheet: added Oct 1 -> 7 months"),
    ("C005", "南京紫金软件有限公司", D(2026, 5, 1), 5, None, None, None, None, None, None,
     "price sheet: added Oct 10 -> 7 months"),
    ("C006", "成都天府网络科技有限公司", D(2026, 5, 1), 5, None, None, None, None, None, None,
     "price sheet: added Oct 16 -> 6 months"),
    ("C007", "武汉光谷信息服务有限公司", D(2025, 11, 1), 3, None, None, None, None, None, None,
     "price sheet: 3 seats renew for 3000"),
    ("C008", "西安古城文化传媒有限公司", D(2025, 11, 1), 5, None, None, None, None, None, None,
     "price sheet: 5 + 6 seats renew for 10450"),
    ("C009", "重庆山城汽车配件有限公司", D(2026, 5, 1), 9, None, None, None, None, None, None,
     "addition crosses into tier 11-20"),
    ("C010", "苏州园林设计院", D(2026, 9, 20), 5, None, None, None, None, None, None,
     "addition capped at the annual price"),
    ("C011", "天津港湾船务代理有限公司", D(2025, 12, 1), 4, None, None, None, None, None, None,
     "month-end clamping: Oct 31 + 1 month = Nov 30"),
    ("C012", "青岛海风啤酒销售有限公司", D(2024, 2, 29), 4, D(2027, 2, 27), None, None, None, None, None,
     "opened on 29 February; paid_through of term 2"),
    ("C013", "厦门鹭岛旅游服务有限公司", D(2025, 11, 10), 6, None, None, None, "hr@ludao.cn", None, None,
     "renewal window opens in October: renewal notice"),
    ("C014", "长沙湘江教育咨询有限公司", D(2025, 10, 1), 4, None, None, None, None, None, None,
     "expired Sep 30: in grace, overdue notice"),
    ("C015", "郑州中原农业发展有限公司", D(2025, 8, 15), 3, None, None, None, None, None, None,
     "not renewed: reclaimed"),
    ("C016", "沈阳北方重工贸易有限公司", D(2025, 9, 20), 8, None, None, None, None, None, None,
     "renewed on the last day of grace"),
    ("C017", "大连海洋渔业有限公司", D(2025, 9, 10), 3, None, None, None, None, None, None,
     "renewal after the reclaim date: rejected"),
    ("C018", "昆明春城花卉有限公司", D(2025, 12, 15), 5, None, None, None, None, None, None,
     "renewal before the window opens: rejected"),
    ("C019", "哈尔滨冰城食品有限公司", D(2009, 11, 1), 6, None, "1200", "4008001000", None, None, None,
     "legacy: first renewal at the legacy rate (2010), market rate since"),
    ("C020", "福州闽江茶业有限公司", D(2009, 8, 1), 4, None, "1200", None, None, None, None,
     "legacy: first addition after 2010-03-01 at the legacy rate"),
    ("C021", "济南泉城医疗器械有限公司", D(2026, 3, 1), 10, None, None, None, None, None, None,
     "remove lowers the seat count, no refund"),
    ("C022", "合肥科学岛仪器有限公司", D(2026, 1, 10), 4, None, None, None, None, None, None,
     "remove below the minimum: rejected"),
    ("C023", "南昌赣江建材有限公司", D(2026, 2, 1), 48, None, None, None, None, None, None,
     "addition above 50 seats: rejected"),
    ("C024", "贵阳数谷大数据有限公司", D(2025, 9, 5), 5, None, None, None, None, None, None,
     "addition on an expired account: rejected"),
    ("C025", "太原晋商物产有限公司", D(2025, 10, 25), 10, None, None, None, None, None, None,
     "same day: add then renew (sheet order)"),
    ("C026", "石家庄燕赵药业有限公司", D(2025, 10, 25), 10, None, None, None, None, None, None,
     "same day: renew then add"),
    ("C027", "兰州丝路商贸有限公司", D(2025, 11, 1), 7, None, None, "8009876543", None, None, None,
     "renewal dated as Chinese text"),
    ("C028", "宁波港城外贸有限公司", D(2026, 4, 1), 5, None, None, "12345", None, None, None,
     "bad: enterprise number"),
    ("C029", '=HYPERLINK("http://example.com","点我")', D(2026, 10, 8), 3, None, None, None, None, None, None,
     "formula-like name stays text"),
    ("C030", '<img src="file:///etc/passwd">阿里云代理商', D(2026, 10, 9), 3, None, None, None, None, None, None,
     "HTML-like name prints as text"),
    ("C031", "海口椰风旅游有限公司", D(2026, 6, 1), 5, None, "900", None, None, None, None,
     "bad: legacy_rate on a modern account"),
    ("C032", "拉萨雪域文化传播有限公司", D(2026, 6, 1), 5, D(2027, 3, 31), None, None, None, None, None,
     "bad: paid_through is not a term end"),
    ("C033", "南宁绿城电子有限公司", D(2024, 6, 1), 20, D(2027, 5, 31), None, None, None, None, None,
     "active, prepaid; nothing to bill"),
    ("C034", "呼和浩特草原乳业有限公司", D(2025, 3, 1), 15, D(2027, 2, 28), None, None, None, None, None,
     "active; nothing to bill"),
    ("C030", "重复编号测试有限公司", D(2026, 1, 1), 5, None, None, None, None, None, None,
     "bad: duplicate customer_id"),
    ("C035", "", D(2026, 10, 2), 5, None, None, None, None, None, None, "bad: blank name"),
    ("C036", "银川塞上明珠商贸有限公司", "2026-13-01", 5, None, None, None, None, None, None, "bad: impossible date"),
]

# customer_id, date, type, seats, reference, why
CHANGES = [
    ("C004", D(2026, 10, 1), "add", 2, "HT-2026-1001", "7 months x 100 x 2 = 1400"),
    ("C005", D(2026, 10, 10), "加工号", 1, "HT-2026-1002", "6 months 21 days -> 7"),
    ("C006", D(2026, 10, 16), "add", 1, None, "6 months 15 days -> 6"),
    ("C007", D(2026, 10, 8), "renew", None, "XY-2026-0007", "3 x 1000"),
    ("C008", D(2026, 3, 1), "add", 6, "HT-2026-0301", "earlier month: shapes the seat count only"),
    ("C008", D(2026, 10, 20), "续费", None, "XY-2026-0008", "11 x 950 = 10450"),
    ("C009", D(2026, 10, 5), "add", 3, None, "9 + 3 = 12 seats: tier 11-20, 95/month"),
    ("C010", D(2026, 10, 1), "add", 2, None, "12 months x 100 = 1200 > 1000: capped"),
    ("C011", D(2026, 10, 31), "add", 1, None, "Oct 31 -> Dec 1: 1 month 1 day -> 1 month"),
    ("C012", D(2026, 10, 12), "add", 1, None, "to 2027-02-28: 4 months 16 days -> 5 months"),
    ("C016", D(2026, 10, 19), "renew", None, None, "last day of grace"),
    ("C017", D(2026, 10, 12), "renew", None, None, "bad: reclaimed on 2026-10-10"),
    ("C018", D(2026, 10, 20), "renew", None, None, "bad: window opens 2026-11-15"),
    ("C020", D(2026, 10, 9), "add", 2, "HT-2026-1020", "legacy addition: 120/month"),
    ("C021", D(2026, 6, 1), "remove", 4, None, "10 -> 6 seats"),
    ("C021", D(2026, 10, 3), "add", 1, None, "6 + 1 = 7 seats"),
    ("C022", D(2026, 10, 5), "减工号", 2, None, "bad: 4 - 2 < 3"),
    ("C023", D(2026, 10, 8), "add", 5, None, "bad: 48 + 5 > 50"),
    ("C024", D(2026, 10, 6), "add", 1, None, "bad: expired 2026-09-04"),
    ("C025", D(2026, 10, 15), "add", 1, None, "before the renewal on the same day: 0 months"),
    ("C025", D(2026, 10, 15), "renew", None, None, "renews 11 seats"),
    ("C026", D(2026, 10, 15), "renew", None, None, "renews 10 seats"),
    ("C026", D(2026, 10, 15), "add", 1, None, "after the renewal: 12 months, capped"),
    ("C027", "2026年10月9日", "renew", None, None, "Chinese date text"),
    ("C999", D(2026, 10, 3), "add", 1, None, "bad: unknown customer"),
    ("C034", D(2026, 10, 5), "upgrade", 1, None, "bad: unknown type"),
    ("C033", D(2026, 10, 7), "add", "2.5", None, "bad: seats not whole"),
    ("C034", D(2026, 11, 3), "add", 1, None, "after the period: ignored by the October run"),
]


def _history() -> list[tuple]:
    """Legacy accounts' yearly renewals, so their allowances are used at the right time."""
    rows = [("C019", D(2010, 10, 15), "renew", None, "XY-2010-0019", "legacy renewal 6 x 1200")]
    rows += [("C019", D(y, 10, 15), "renew", None, f"XY-{y}-0019", "market renewal") for y in range(2011, 2026)]
    rows.append(("C019", D(2026, 10, 12), "renew", None, "XY-2026-0019", "market: 6 x 1000"))
    rows += [("C020", D(y, 7, 10), "renew", None, f"XY-{y}-0020", "yearly renewal") for y in range(2010, 2027)]
    return rows


# The buyers' tax ids (统一社会信用代码, valid check characters) and e-fapiao columns. C029 and C030 have no
# tax id: their bills are listed in the fapiao export's problems sheet. C008 wants a 增值税专用发票.
AREAS = ["310101", "440106", "330106", "320102", "510107", "420111", "610113", "500112", "320508", "120101",
         "370212", "350203", "430102", "410105", "210102", "210202", "530102", "230102", "350102", "370102",
         "340104", "360102", "520115", "140105", "130102", "620102"]
NO_TAX_ID = {"C029", "C030"}
FAPIAO = {  # customer_id: (发票类型, 电话, 开户行, 银行账号)
    "C008": ("增值税专用发票", "029-8765 4321", "中国银行西安高新支行", "1020 3040 5060 7080"),
}


def uscc(area: str, serial: int) -> str:
    """A well-formed 统一社会信用代码 (GB 32100-2015): 9 + 1 + area + MA + serial + check character."""
    from invoicer.taxid import uscc_check_char

    first17 = f"91{area}MA{serial:07d}"
    return first17 + uscc_check_char(first17)


def _customer_rows() -> list[list]:
    rows = []
    for n, row in enumerate(CUSTOMERS):
        cid, tax_id = row[0], row[9]
        if tax_id is None and cid not in NO_TAX_ID and n < len(AREAS) + 1:
            tax_id = uscc(AREAS[(n - 1) % len(AREAS)], 1000 + n)
        rows.append([*row[:9], tax_id, *FAPIAO.get(cid, (None, None, None, None)), row[10]])
    return rows


def build(path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "客户"  # Chinese headers on the customers sheet, English on the changes sheet
    ws.append(["客户编号", "客户名称", "开通日期", "工号数", "已付至", "老资费", "企业QQ号码", "邮箱", "地址",
               "税号", "发票类型", "电话", "开户行", "银行账号", "why"])
    for row in _customer_rows():
        ws.append(row)
    ch = wb.create_sheet("changes")
    ch.append(["date", "customer_id", "type", "seats", "reference", "why"])  # another column order
    for cid, date, kind, seats, ref, why in CHANGES + _history():
        ch.append([date, cid, kind, seats, ref, why])
    for sheet in (ws, ch):
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"  # a name that looks like a formula is still a name
    rs = wb.create_sheet("经销商")
    for k, v in RESELLER:
        rs.append([k, v])
    wb.properties.created = wb.properties.modified = dt.datetime(2026, 11, 1)
    wb.save(path)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # invoicer.taxid, run from anywhere
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("roster.xlsx")
    build(out)
    print(f"wrote {out}")
