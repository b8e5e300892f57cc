"""Kubernetes backend: one pod per role plus one headless Service per job, on GKE GPU pools.

Pure builders (`names`, `placement`, `manifests`, `status`) produce and read plain dicts in the
Kubernetes API's JSON shape; only `launcher` has side effects, and it talks to the cluster
through the small `api.KubeApi` interface (`fake.FakeKubeApi` in memory, or the Airflow
binding's adapter over the cncf-kubernetes provider's hook). Nothing here imports the
`kubernetes` client.
"""
