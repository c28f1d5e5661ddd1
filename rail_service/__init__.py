"""Server-side plumbing that central and the bank nodes share: database engines and
migrations, and the HTTP edge (strict JSON bodies, typed errors, operator credentials).
Domain rules never import this package."""
