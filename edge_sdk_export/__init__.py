"""Workstation tooling: reference network, synthetic faces, training, export (torch allowed here)."""
