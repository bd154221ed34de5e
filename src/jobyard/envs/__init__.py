"""Job environments: cached virtualenvs with an environment configuration's pip requirements."""
