-- expand: `archive` needs the unified phase to have soaked (24 h by default); an operator may
-- archive sooner with `--now --reason`, and the manifest keeps who waived the soak and why.
ALTER TABLE archive_manifests ADD COLUMN waiver text;
