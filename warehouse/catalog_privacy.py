"""Warehouse tables of the privacy side, declared like those of warehouse/catalog.py."""

from __future__ import annotations

TABLES: tuple = ()
