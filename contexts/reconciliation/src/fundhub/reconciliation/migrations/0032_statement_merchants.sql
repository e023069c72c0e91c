-- A platform with several merchant apps gets several bills of one source for one day (one per
-- WeChat Pay 商户号, Alipay seller id, bank app id): a file is current per source, day and
-- merchant, and a day's run reads every current file of its source. Files imported before this
-- name no merchant ('').
ALTER TABLE recon_files ADD COLUMN merchant text NOT NULL DEFAULT '';
DROP INDEX recon_files_current;
CREATE UNIQUE INDEX recon_files_current ON recon_files (source, day, merchant)
    WHERE superseded_by IS NULL;

-- The files a run read (``file_id`` stays the newest of them).
ALTER TABLE recon_runs ADD COLUMN file_ids bigint[];
UPDATE recon_runs SET file_ids = ARRAY[file_id];
ALTER TABLE recon_runs ALTER COLUMN file_ids SET NOT NULL;
