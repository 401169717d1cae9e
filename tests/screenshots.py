"""Screenshots of the console's main pages, for a person to look at: `make screenshots`.

Runs the sandbox and its sample programme as `make run` does (in a scratch folder, on free
ports), polls each sample tenant once so the desk has tickets, signs in as an administrator
in Debian's chromium and writes one PNG per page into the folder given (default
`build/screenshots`): the desk's queue, a ticket, a company's journey, the cohort dashboard,
the applications, the reports archive, and the audit log; in Japanese, then the queue and
ticket in English. Nothing here is a test: it shows what the tests check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))

from edrtrial.db import make_engine, upgrade  # noqa: E402
from edrtrial.models import Ticket  # noqa: E402
from edrtrial.programme.sample import SAMPLE_COHORT  # noqa: E402
from edrtrial.service import jobs  # noqa: E402

from browser import CHROMIUM, FLAGS  # noqa: E402
from sandbox_config import sample_world, serving  # noqa: E402
from web_support import start_console  # noqa: E402

PAGES = (
    ("queue", "/desk"),
    ("ticket", "/tickets/{ticket}"),
    ("company", "/companies/sakura-seisakusho"),
    ("cohort", f"/cohorts/{SAMPLE_COHORT}"),
    ("applications", "/programme"),
    ("reports", "/reports"),
    ("audit", "/admin/audit"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="build/screenshots", type=Path)
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edrtrial-screens-") as scratch:
        tmp = Path(scratch)
        url = f"sqlite:///{tmp / 'edrtrial.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        with (
            serving(sample_world(7), tmp / "sandbox") as sandbox,
            start_console(tmp, url, sandbox=sandbox) as console,
        ):
            for tenant in console.runtime.tenants():
                jobs.TENANT_JOBS["inventory"](console.runtime, tenant.company_key)
                jobs.TENANT_JOBS["poll"](console.runtime, tenant.company_key)
            with console.runtime.sessions() as session:
                ticket = session.scalar(select(Ticket.id).order_by(Ticket.id.desc()).limit(1))
            password = console.add_user("admin", ["admin"], display_name="管理者")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=FLAGS
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{console.base_url}/login")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", password)
                page.click("button.primary")
                for language in ("ja", "en"):
                    if language == "en":
                        page.click("button[name=lang][value=en]")
                    for name, path in PAGES:
                        if language == "en" and name not in ("queue", "ticket"):
                            continue
                        page.goto(console.base_url + path.format(ticket=ticket or 0))
                        page.wait_for_load_state("networkidle")
                        target = out / f"{name}-{language}.png"
                        page.screenshot(path=str(target), full_page=True)
                        print(target)
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
