"""The one output writer (ptolemy_rt.files): every kind of output path, failures that leave
nothing behind, and several outputs committed together or not at all."""
from __future__ import annotations

import errno
import os
import socket
import stat
import threading

import pytest

from ptolemy_rt import files, output
from ptolemy_rt.errors import OutputError


def _listing(folder):
    return sorted(os.listdir(folder))


def _umask_mode():
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def _mknod_or_skip(path, major, minor):
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot create a device node here ({e.strerror})")
    return path


def test_output_module_re_exports_the_one_writer():
    assert output.write_atomic is files.write_atomic
    assert output.check_output_path is files.check_output_path
    assert output.same_file is files.same_file
    assert output.commit_outputs is files.commit_outputs


def test_new_file_gets_umask_mode_and_existing_file_keeps_its_mode(tmp_path):
    p = tmp_path / "out.json"
    files.write_atomic(p, "[]\n")
    assert p.read_bytes() == b"[]\n"
    assert stat.S_IMODE(os.stat(p).st_mode) == _umask_mode()
    os.chmod(p, 0o640)
    files.write_atomic(p, b"\x00\xff")
    assert p.read_bytes() == b"\x00\xff"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert _listing(tmp_path) == ["out.json"]


def test_name_of_255_bytes_is_written(tmp_path):
    """The temporary name is short: a legal 250- or 255-byte output name works."""
    for n in (250, 255):
        p = tmp_path / ("a" * (n - 5) + ".json")
        assert len(p.name.encode()) == n
        files.write_atomic(p, "[]\n")
        assert p.read_text() == "[]\n"
    assert len(_listing(tmp_path)) == 2
    too_long = tmp_path / ("b" * 256)
    with pytest.raises(OutputError, match="too long") as e:
        files.write_atomic(too_long, "x")
    assert "\n" not in str(e.value)
    assert len(_listing(tmp_path)) == 2  # no temporary left behind


def test_symlink_updates_its_target_and_stays_a_link(tmp_path):
    real_dir = tmp_path / "runs"
    real_dir.mkdir()
    target = real_dir / "run7.json"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    link = tmp_path / "latest.json"
    link.symlink_to(os.path.join("runs", "run7.json"))  # relative link
    files.write_atomic(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "run7.json")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert _listing(real_dir) == ["run7.json"] and _listing(tmp_path) == ["latest.json", "runs"]


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.json"
    link.symlink_to("made.json")
    files.write_atomic(link, "x\n")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x\n"
    gone = tmp_path / "gone.json"
    gone.symlink_to(tmp_path / "no" / "such" / "made.json")
    with pytest.raises(OutputError, match="does not exist"):
        files.write_atomic(gone, "x")
    assert gone.is_symlink()


def test_symlink_loop_and_link_to_folder_refused(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OutputError, match="loop"):
        files.write_atomic(a, "x")
    d = tmp_path / "d"
    d.mkdir()
    ln = tmp_path / "to_dir"
    ln.symlink_to(d)
    with pytest.raises(OutputError, match="directory"):
        files.write_atomic(ln, "x")
    assert a.is_symlink() and b.is_symlink() and ln.is_symlink() and _listing(d) == []


def test_fifo_is_written_in_place(tmp_path):
    """A FIFO keeps being a FIFO and its reader gets the data (like a shell redirection)."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    files.write_atomic(fifo, "rank,score\n1,0.5\n")
    reader.join(10)
    assert got == [b"rank,score\n1,0.5\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _listing(tmp_path) == ["out.fifo"]


def test_device_node_is_written_in_place(tmp_path):
    """`-o /dev/null` as root must not replace the device by a regular file (a node made
    here: the same device, 1:3)."""
    null = _mknod_or_skip(tmp_path / "null", 1, 3)
    files.write_atomic(null, "[]\n" * 1000)
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert _listing(tmp_path) == ["null"]
    files.check_output_path("/dev/null")  # the real one is accepted (and not touched)


def test_full_device_is_an_output_error(tmp_path):
    full = _mknod_or_skip(tmp_path / "full", 1, 7)  # /dev/full: every write fails with ENOSPC
    with pytest.raises(OutputError) as e:
        files.write_atomic(full, "[]\n")
    assert "no space left" in str(e.value).lower() and "\n" not in str(e.value)
    assert stat.S_ISCHR(os.lstat(full).st_mode) and _listing(tmp_path) == ["full"]


def test_socket_and_directory_refused(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        files.write_atomic(tmp_path, "x")
    sock_path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
    except OSError as e:  # pragma: no cover - e.g. a path too long for AF_UNIX
        pytest.skip(f"cannot bind a unix socket here ({e.strerror})")
    try:
        with pytest.raises(OutputError, match="not a regular file"):
            files.write_atomic(sock_path, "x")
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        s.close()


def test_protected_inputs_are_named(tmp_path):
    nav = tmp_path / "grid.nav"
    nav.write_text("AdocVersion = 2.00\n")
    link = tmp_path / "alias.nav"
    link.symlink_to(nav)
    for out in (nav, link, tmp_path / "." / "grid.nav"):
        with pytest.raises(OutputError) as e:
            files.write_atomic(out, "x", protect=[tmp_path / "a.mrc", nav])
        msg = str(e.value)
        assert "refusing to overwrite the input file" in msg and str(nav) in msg and "image" not in msg
    assert nav.read_text() == "AdocVersion = 2.00\n"


def test_disk_full_while_writing_leaves_nothing(tmp_path, monkeypatch):
    p = tmp_path / "out.json"
    p.write_text("old\n")

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", full)
    with pytest.raises(OutputError, match="No space left") as e:
        files.write_atomic(p, "new\n")
    assert str(e.value).startswith(str(p))
    monkeypatch.undo()
    assert p.read_text() == "old\n" and _listing(tmp_path) == ["out.json"]


def test_commit_outputs_writes_all(tmp_path):
    a, b = tmp_path / "r.json", tmp_path / "sub" / "r.png"
    b.parent.mkdir()
    files.commit_outputs([(a, "[]\n"), (b, b"\x89PNG")])
    assert a.read_text() == "[]\n" and b.read_bytes() == b"\x89PNG"
    assert _listing(tmp_path) == ["r.json", "sub"] and _listing(b.parent) == ["r.png"]
    files.commit_outputs([])  # nothing to do


def test_commit_outputs_checks_every_path_before_writing(tmp_path):
    a = tmp_path / "r.json"
    with pytest.raises(OutputError, match="does not exist"):
        files.commit_outputs([(a, "[]\n"), (tmp_path / "missing" / "r.png", b"png")])
    with pytest.raises(OutputError, match="named twice"):
        files.commit_outputs([(a, "[]\n"), (tmp_path / "." / "r.json", "x")])
    assert _listing(tmp_path) == []


def test_commit_outputs_second_write_fails_none_appear(tmp_path, monkeypatch):
    """Disk full on the second output (the plot): the first (the result) does not appear
    and an older first output is left as it was."""
    a, b = tmp_path / "r.json", tmp_path / "r.png"
    a.write_text("old result\n")
    real_fsync = os.fsync
    calls = []

    def fsync_fails_second(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_fails_second)
    with pytest.raises(OutputError) as e:
        files.commit_outputs([(a, "new result\n"), (b, b"png")])
    monkeypatch.undo()
    assert str(e.value).startswith(str(b)) and "No space left" in str(e.value)
    assert a.read_text() == "old result\n" and not b.exists()
    assert _listing(tmp_path) == ["r.json"]


def test_commit_outputs_failed_rename_rolls_back(tmp_path, monkeypatch):
    """A rename that fails undoes the renames already made: a replaced file comes back, a
    new one goes."""
    a, b, c = tmp_path / "a.json", tmp_path / "b.csv", tmp_path / "c.txt"
    a.write_text("old a\n")
    real_replace = os.replace
    done = []

    def replace(src, dst):
        if str(dst) == str(c) and not done:
            done.append(dst)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OutputError, match="c.txt"):
        files.commit_outputs([(a, "new a\n"), (b, "new b\n"), (c, "new c\n")])
    monkeypatch.undo()
    assert a.read_text() == "old a\n" and not b.exists() and not c.exists()
    assert _listing(tmp_path) == ["a.json"]


def test_interrupt_while_committing_leaves_nothing(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.png"

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.commit_outputs([(a, "a"), (b, "b")])
    monkeypatch.undo()
    assert _listing(tmp_path) == []


def test_commit_outputs_with_a_fifo_and_a_file(tmp_path):
    fifo, f = tmp_path / "o.fifo", tmp_path / "o.png"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    files.commit_outputs([(fifo, "[]\n"), (f, b"png")])
    reader.join(10)
    assert got == [b"[]\n"] and f.read_bytes() == b"png" and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_new_file_mode_follows_a_changed_umask(tmp_path):
    old = os.umask(0o027)
    try:
        files.write_atomic(tmp_path / "a.json", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o640
