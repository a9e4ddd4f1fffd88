DROP TABLE quarantine_resolutions;
DROP TABLE attribute_option_aliases;
