"""Schemathesis fuzzes every operation of the OpenAPI schema: no generated request gets a 500.

Bounded on purpose (a few examples per operation, no shrinking) so it stays well under a minute;
raise KHET_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

EXAMPLES = int(os.environ.get("KHET_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, test_models):
    from khet.service.db import dispose_engines
    from khet.service.main import create_app

    from khet.settings import get_settings

    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KHET_DATABASE_URL", f"sqlite:///{root / 'fuzz.db'}")
        mp.setenv("KHET_MODELS_DIR", str(test_models))
        mp.setenv("KHET_QUEUE_NAME", f"fuzz-{os.getpid()}")
        mp.setenv("KHET_HEARTBEAT_SECONDS", "3600")  # the worker beat below stays fresh
        dispose_engines()
        get_settings.cache_clear()
        app = create_app()
        from khet.service.db import session_scope
        from khet.service.jobs import beat

        beat("fuzz-worker")  # /readyz is ready only with a live worker
        from khet.service.routers.auth import add_user, make_token

        with session_scope() as db:
            user = add_user(db, "fuzzer@example.org", "fuzz password", "admin")
            token, _ = make_token(db, user, "fuzz")
        app.state.fuzz_token = token
        yield app
        dispose_engines()


def test_no_server_errors(fuzz_app):
    """Each operation gets EXAMPLES generated requests (authenticated as an admin, so the
    handlers run, not just the auth check); every 5xx is collected and reported together."""
    from hypothesis import given

    api_schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_app)
    token = fuzz_app.state.fuzz_token
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in api_schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            headers = dict(case.headers or {})
            if "authorization" not in {k.lower() for k in headers}:
                headers["Authorization"] = f"Bearer {token}"
            case.headers = headers
            response = case.call()
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        run()
    assert operations >= 20
    print(f"fuzz: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert statuses[200] and statuses[422], statuses  # handlers ran, validation refused
    assert not failures, "\n".join(failures[:20])
