"""Sweep reports: results store (or W&B) -> pandas -> seaborn figures -> report.html + report.pdf.

    python reports/build.py runs/cifar_cnn [more folders ...] [--out DIR]

Every metric is shown as its task declares it (units.py: read from the runs' summaries, or from
the task registry for schema-1 summaries); a folder of several tasks gets one part per task; a
task family's own figures live in families/<family>.py.
"""
