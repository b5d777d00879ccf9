"""The HA data path of a node: its lease, the standby's pending buffer, rescue and promotion.

`HaStage` is the pipeline stage; `gateway.roles` changes its role.
"""

from gateway._records import decode_rescue, encode_rescue
from gateway.ha._lease import Lease, Role
from gateway.ha.stage import HaStage

__all__ = ["HaStage", "Lease", "Role", "decode_rescue", "encode_rescue"]
