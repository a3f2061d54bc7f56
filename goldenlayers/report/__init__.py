"""Paper-style reports of a run: tables (Tables 1-10 shapes) as markdown/HTML, matplotlib figures (Figures 1-4)
and one self-contained HTML page. See docs/report.md."""

from goldenlayers.report.build import ReportOutput, ReportSettings, report
from goldenlayers.report.data import OVERALL_SCHEMES, RunData, Unavailable, overall
from goldenlayers.report.tables import Table

__all__ = ["OVERALL_SCHEMES", "ReportOutput", "ReportSettings", "RunData", "Table", "Unavailable", "overall", "report"]
