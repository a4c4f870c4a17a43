"""Monitoring surfaces: the status summary and the self-contained HTML report."""

from shipyard.monitoring.report.html import render_report
from shipyard.monitoring.report.series import MonitorInput, Summary, over_time, summarise

__all__ = ["MonitorInput", "Summary", "over_time", "render_report", "summarise"]
