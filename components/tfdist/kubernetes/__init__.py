"""Kubernetes backend: one JobSet per launch (plus Kueue when a queue is named), on GKE GPU pools.

Pure builders and readers (`names`, `placement`, `manifests`, `jobset`, `jobset_policy`, `pods`,
`jobset_status`) produce and read plain dicts in the Kubernetes API's JSON shape; only
`jobset_launcher` and `one_off` have side effects, and they talk to the cluster through the
small `api.KubeApi` interface (in memory: `tfdist.testing.jobset_cluster.FakeJobSetCluster`;
else the Airflow binding's adapter over the cncf-kubernetes provider's hook). Nothing here
imports the `kubernetes` client.
"""
