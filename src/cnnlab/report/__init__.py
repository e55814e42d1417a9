"""Self-contained HTML and Markdown reports, shared by runs, studies and transfer learning."""

from cnnlab.report.document import Report

__all__ = ["Report"]
