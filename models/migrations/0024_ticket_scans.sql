-- pulsegraph 0024: failed ticket scans (ticket.scan_failed) next to the successful ones.
-- Support finds a ticket by its id or by the code a scanner read, in any organization (a
-- platform admin's search names none): expression indexes without the organization in front,
-- over the two scan types only. Created on the partitioned parent, so every month's partition
-- gets them, and partitions made later too. Scanning health reads events_type_time.
CREATE INDEX events_scan_ticket ON events ((properties ->> 'ticketId'))
    WHERE type IN ('ticket.scanned', 'ticket.scan_failed');
CREATE INDEX events_scan_code ON events ((properties ->> 'code'))
    WHERE type IN ('ticket.scanned', 'ticket.scan_failed');
