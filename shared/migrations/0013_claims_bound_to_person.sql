-- A waitlist claim books only for the person who joined the waitlist (issue 14, item 6).
--
-- Claiming an offer gives an admission (token id uuid5(offer_id, entry_id), see shared/waitlist.py)
-- and a hold. The entry records that admission, so the booking transaction can check that whoever
-- books with it is the entry's person (shared/attempts.py, refused claim_person_mismatch). Entries
-- claimed before this migration carry no admission: their claims (30 minutes at most) stay unbound.
ALTER TABLE waitlist_entries ADD COLUMN claim_token_id text;
CREATE UNIQUE INDEX waitlist_entries_claim_token ON waitlist_entries (claim_token_id) WHERE claim_token_id IS NOT NULL;
