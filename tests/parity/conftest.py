"""Command-line options of the pytest suites under tests/parity (pytest only accepts options
registered in a conftest it loads at start-up). They are used by tests/parity/http, whose
conftest documents them."""


def pytest_addoption(parser):
    group = parser.getgroup("http-parity", "HTTP parity suite (tests/parity/http)")
    group.addoption("--runner-url", default=None,
                    help="internal app of an already running runner; starts nothing")
    group.addoption("--public-url", default=None,
                    help="its public (worker) app; worker-app tests skip without it")
    group.addoption("--dsn", default=None, help="the database of that runner (with --runner-url)")
    group.addoption("--campaign", default="lintian-fixes",
                    help="a campaign the runner's configuration defines (with --runner-url)")
    group.addoption("--logs-location", default=None,
                    help="directory logs_location of that runner, to read stored logs back")
    group.addoption("--flavour", default="rust", choices=("rust", "python"),
                    help="'python': expect the reference runner's answers where "
                         "docs/differences.md lists a deliberate difference")
