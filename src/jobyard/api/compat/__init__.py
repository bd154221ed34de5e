"""Compatibility routers: each speaks one existing job API (see /work/shared/specs) and
only translates to and from jobyard's service layer."""
