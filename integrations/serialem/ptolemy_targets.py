#!Python
# ptolemy_targets.py — example SerialEM Python script: rank targets on the selected map with
# ptolemy-rt and add them to the Navigator as points, best first.
#
# Run it from SerialEM's script window (SerialEM >= 4.0 with Python scripting set up; the
# first line "#!Python" tells SerialEM to run it with Python). It uses the `serialem` module
# that SerialEM provides to its Python scripts, and runs the `ptolemy` command in a
# separate process, so ptolemy-rt does not have to be importable by SerialEM's Python.
#
# Steps:
#   1. Select a map item in the Navigator (an atlas / grid montage for "lowmag", a medium-mag
#      map for "medmag") and run this script.
#   2. The script saves the Navigator, loads the map into buffer LOAD_BUFFER, saves that
#      image to an MRC file beside the Navigator, and runs
#        ptolemy MODE IMAGE --format nav --nav-map NAVFILE:LABEL -o TARGETS.nav
#   3. It merges TARGETS.nav into the open Navigator (MergeNavFile): one point per target,
#      drawn on the map, labelled in score order, the score in the item's note.
#
# Settings below: PTOLEMY (full path of the ptolemy executable of your ptolemy-rt install,
# e.g. C:\ptolemy-rt\.venv\Scripts\ptolemy.exe), MODE, EXTRA_ARGS, LOAD_BUFFER.
# See docs/SERIALEM.md for the coordinate conventions and troubleshooting.

import os
import subprocess
import time

import serialem as sem

PTOLEMY = r"C:\ptolemy-rt\.venv\Scripts\ptolemy.exe"  # path of the ptolemy command
MODE = "lowmag"  # "lowmag": grid squares on an atlas; "medmag": holes on a medium-mag map
EXTRA_ARGS = []  # e.g. ["--models", "ptolemy-2022"]
LOAD_BUFFER = "O"  # buffer the map is loaded into before it is saved for ptolemy
TIMEOUT_S = 600


def fail(msg):
    sem.OKBox("ptolemy_targets: " + msg)
    sem.Exit()


def main():
    if not sem.ReportIfNavOpen():
        fail("open the Navigator and select a map item first")
    report = sem.ReportNavItem()  # index, stage X, Y, Z, item type (2 = map)
    if int(report[4]) != 2:
        fail("the selected Navigator item is not a map")
    label = sem.GetVariable("navLabel").strip()

    # ptolemy reads the map item (MapScaleMat, MapWidthHeight, StageXYZ) from the saved file
    sem.SaveNavigator()
    nav_file = sem.ReportNavFile()
    if isinstance(nav_file, (tuple, list)):
        nav_file = nav_file[0]
    nav_file = str(nav_file).strip()
    if not os.path.isfile(nav_file):
        fail("cannot find the saved Navigator file " + nav_file)

    # the map image as SerialEM holds it (a montage comes back as its overview)
    sem.LoadNavMap(LOAD_BUFFER)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = os.path.dirname(nav_file)
    image = os.path.join(folder, "ptolemy_map_%s_%s.mrc" % (label, stamp))
    targets = os.path.join(folder, "ptolemy_targets_%s_%s.nav" % (label, stamp))
    sem.SaveToOtherFile(LOAD_BUFFER, "MRC", "NONE", image)

    cmd = [PTOLEMY, MODE, image, "--format", "nav", "--nav-map", nav_file + ":" + label,
           "-o", targets] + list(EXTRA_ARGS)
    sem.Echo("ptolemy_targets: running " + " ".join(cmd))
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        fail("ptolemy not found at " + PTOLEMY + "; set PTOLEMY at the top of the script")
    except subprocess.TimeoutExpired:
        fail("ptolemy did not finish within %d s" % TIMEOUT_S)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout or "").strip().splitlines()
        fail("ptolemy failed (exit %d): %s" % (proc.returncode, msg[-1] if msg else "no message"))

    sem.MergeNavFile(targets)
    sem.Echo("ptolemy_targets: merged %s (%.1f s); items are labelled in score order, "
             "the score is in each item's note" % (targets, time.time() - t0))


main()
