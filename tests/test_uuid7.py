import os

from auditlog.events.uuid7 import uuid7


def test_uuid7_is_version_7_and_time_ordered():
    first, second = uuid7(unix_ms=1_000), uuid7(unix_ms=1_001)
    assert (first.version, first.variant) == (7, "specified in RFC 4122")
    assert first < second


def test_uuid7_random_bits_differ_between_calls():
    assert len({uuid7(unix_ms=1_000) for _ in range(10_000)}) == 10_000


def test_a_forked_child_never_repeats_its_parents_next_uuid():
    uuid7()  # the parent now holds a block of random bytes
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, uuid7(unix_ms=1_000).bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.close(write_end)
    assert uuid7(unix_ms=1_000).bytes != child
