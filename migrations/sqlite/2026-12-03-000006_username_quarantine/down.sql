DROP TABLE generated_keys;
DROP TABLE username_quarantine;
