"""Sweep reports: results store (or W&B) -> pandas -> seaborn figures -> report.html + report.pdf.

    python reports/build.py runs/cifar_cnn [more folders ...] [--out DIR]
"""
