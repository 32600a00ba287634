"""Beyond one machine: a matrix of builds (variants x targets) run one pair at a time, in N local processes, or as
Ray tasks on a cluster (`ray_tasks.py`), every bundle landing in --out atomically and every failed pair failing
alone. The fleet of boards is the device side's (device/fleet.py); measurements travel with bundles in publish/."""
