"""Lint-time stand-in for dbt's `modules` context (datetime, re, ...)."""

import datetime
import re

__all__ = ["datetime", "re"]
