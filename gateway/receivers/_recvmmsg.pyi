from gateway.pipeline import RawItem

MAX_BATCH: int

def recv_batch(fd: int, max_msgs: int, max_size: int, received_at: float,
               into: list[RawItem]) -> tuple[int, int]: ...
