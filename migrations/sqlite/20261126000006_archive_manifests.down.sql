DROP TABLE archive_manifests;
