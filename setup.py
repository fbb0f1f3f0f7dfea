"""What setup.cfg cannot say: the top-level migrations/ folder ships inside the package.

The repository keeps its Alembic folder at the top (migrations/); an installed wheel carries it as
polygenix/migrations, so `polygenix db upgrade` needs no checkout. Everything else is in
setup.cfg.
"""

from setuptools import find_packages, setup

MIGRATIONS = "polygenix.migrations"

setup(
    packages=[*find_packages(include=["polygenix", "polygenix.*"]), MIGRATIONS],
    package_dir={MIGRATIONS: "migrations"},
    package_data={
        "polygenix": ["data/*.gz"],
        "polygenix.web": ["templates/web/*.html", "static/*.*", "static/*/*"],
        MIGRATIONS: ["README", "alembic.ini", "script.py.mako", "versions/*.py"],
    },
)
