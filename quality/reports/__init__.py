"""The reports people read: the weekly epidemiological report (weekly.py) and the data-quality and
lab-activity report (dq.py), self-contained HTML files with inline SVG charts (charts.py,
francemap.py) and disclosure control of every count they show (disclosure.py)."""
