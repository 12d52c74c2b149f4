-- The consumer group a subscribe flow reads with. New flows get one built
-- from ids; flows enabled before keep the group they had (built from names),
-- so their committed offsets still apply.
ALTER TABLE flows ADD COLUMN consumer_group TEXT;

UPDATE flows
SET consumer_group = 'eventflows.'
    || (SELECT replace(organizations.name || '/' || algorithms.name, '/', '.')
        FROM algorithms JOIN organizations ON organizations.id = algorithms.organization_id
        WHERE algorithms.id = flows.algorithm_id)
    || '.' || topic
WHERE direction = 'subscribe';
