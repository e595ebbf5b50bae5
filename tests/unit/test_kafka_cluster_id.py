"""The local Kafka cluster's id: the shape KRaft's storage tool takes."""

from __future__ import annotations

import base64

from deploy.kafka import new_cluster_id


def test_cluster_ids_are_sixteen_bytes_and_never_start_with_a_dash() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # ~47 would start with "-" by chance
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
