class ReportError(Exception):
    """Bad input to a report: one line naming the file."""
