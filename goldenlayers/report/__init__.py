"""Paper-style reports of a run: tables (Tables 1-10 shapes) as markdown/HTML, matplotlib figures (Figures 1-4)
and one self-contained HTML page. See docs/report.md."""

from goldenlayers.report.build import ReportOutput, ReportSettings, report
from goldenlayers.report.data import RunData, Unavailable
from goldenlayers.report.tables import Table

__all__ = ["ReportOutput", "ReportSettings", "RunData", "Table", "Unavailable", "report"]
