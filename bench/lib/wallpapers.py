#!/usr/bin/env python3
"""Camera photographs from two Debian wallpaper packages, into DATA/photos-wallpapers.

lomiri-wallpapers-16.04 (Ubuntu's wallpaper contest entries, credited in their names;
its one abstract render, umang, left out) and mate-backgrounds' nature folder (its
abstract and desktop folders are renders, left out): 26 JPEGs of 1280-5312 px as
their photographers saved them (14 progressive, 12 baseline; 4:2:0, 4:2:2 and 4:4:4
chroma). Fetched once with `apt-get download` into DATA/cache (62 MB of .deb).
Standard library only: scripts/fetch_data.sh runs it with the system Python.

Usage: wallpapers.py DATA
"""
import glob
import os
import shutil
import subprocess
import sys

WALLPAPERS = {
    "lomiri-wallpapers-16.04": ["Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
                                "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
                                "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
                                "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
                                "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg"],
    "mate-backgrounds": [f"mate/nature/{n}.jpg" for n in ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
                                                          "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"]],
}


def wallpaper_photos(data):
    """The 26 photos' paths, fetched and extracted first if need be."""
    dest = os.path.join(data, "photos-wallpapers")
    if os.path.isdir(dest):
        return sorted(glob.glob(os.path.join(dest, "*")))
    cache = os.path.join(data, "cache")
    os.makedirs(cache, exist_ok=True)
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for pkg, names in WALLPAPERS.items():
        debs = glob.glob(os.path.join(cache, pkg + "_*.deb"))
        if not debs:
            get = lambda: subprocess.run(["apt-get", "download", pkg], cwd=cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # A fresh machine may not have read the package lists yet.
            if get().returncode != 0:
                subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, check=True)
                if get().returncode != 0:
                    sys.exit(f"apt-get download {pkg} failed")
            debs = glob.glob(os.path.join(cache, pkg + "_*.deb"))
        x = os.path.join(tmp, "x")
        subprocess.run(["dpkg-deb", "-x", debs[0], x], check=True)
        for n in names:
            shutil.copy(os.path.join(x, "usr/share/backgrounds", n), os.path.join(tmp, os.path.basename(n)))
        shutil.rmtree(x)
    os.rename(tmp, dest)
    return sorted(glob.glob(os.path.join(dest, "*")))


if __name__ == "__main__":
    print(len(wallpaper_photos(sys.argv[1])), "wallpaper photos")
