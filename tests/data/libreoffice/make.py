"""Makes the LibreOffice-written rosters in this folder (run by hand; CI only reads the files it made).

The bundled sample roster as a clerk would have kept it in LibreOffice Calc 7.4 (Debian's
``libreoffice-calc-nogui``): a merged title row above the header, C001's seats as a formula (``=2+3``),
opening dates shown in the Chinese format (2026年10月1日), C002's seats in a cell formatted as text; then
saved by LibreOffice itself as .ods, .xls (Excel 97) and .xlsx, and exported as CSV files in GB18030 (the
encoding Chinese Windows uses), renamed as a CSV roster needs (客户.csv, changes.csv, 经销商.csv): once by a
LibreOffice set to the zh-CN locale (csv-gb18030: dates as 2026/5/1, what a clerk in China exports) and once
in its default en-US locale (csv-en-us: dates as 05/01/2026, which the invoicer must not guess).

    .venv/bin/python tests/data/libreoffice/make.py
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import openpyxl
from openpyxl.styles import Font

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[2] / "samples" / "roster.xlsx"
CSV_GB18030 = "csv:Text - txt - csv (StarCalc):44,34,85,1,,0,false,true,false,false,false,-1"  # 85: GB18030, -1: every sheet

ZH_CN_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema">
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooSetupSystemLocale" oor:op="fuse"><value>zh-CN</value></prop></item>
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooLocale" oor:op="fuse"><value>zh-CN</value></prop></item>
</oor:items>
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wb = openpyxl.load_workbook(SAMPLE)
        ws = wb["客户"]
        ws.insert_rows(1)
        ws["D3"] = "=2+3"  # C001: 5 seats, as a formula (LibreOffice saves its value)
        ws["D4"].number_format = "@"  # C002: 12 seats in a cell formatted as text
        for (cell,) in ws.iter_rows(min_row=3, min_col=3, max_col=3):
            cell.number_format = 'yyyy"年"m"月"d"日"' if cell.row % 2 else "yyyy/mm/dd"
        ws["A1"] = "客户名单（2026年10月）"
        ws.merge_cells("A1:F1")
        ws["A1"].font = Font(bold=True, size=14)
        authored = tmp / "roster.xlsx"
        wb.save(authored)
        for target in ("ods", "xls", "xlsx:Calc MS Excel 2007 XML"):
            subprocess.run(["soffice", "--headless", "--convert-to", target, "--outdir", str(tmp / "lo"),
                            str(authored)], check=True, capture_output=True)
        for suffix in ("ods", "xls", "xlsx"):
            shutil.copyfile(tmp / "lo" / f"roster.{suffix}", HERE / f"roster.{suffix}")
        profile = tmp / "zh-CN" / "user"
        profile.mkdir(parents=True)
        (profile / "registrymodifications.xcu").write_text(ZH_CN_PROFILE, encoding="utf-8")
        for folder_name, options in (("csv-gb18030", [f"-env:UserInstallation={profile.parent.as_uri()}"]),
                                     ("csv-en-us", [])):
            made = tmp / folder_name
            subprocess.run(["soffice", *options, "--headless", "--convert-to", CSV_GB18030, "--outdir", str(made),
                            str(HERE / "roster.ods")], check=True, capture_output=True)
            folder = HERE / folder_name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            for sheet, name in (("客户", "客户.csv"), ("changes", "changes.csv"), ("经销商", "经销商.csv")):
                shutil.copyfile(made / f"roster-{sheet}.csv", folder / name)


if __name__ == "__main__":
    main()
