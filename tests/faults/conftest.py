from tests.faults.support import fault_zone  # noqa: F401 - the fixture every fault test takes
