-- A single-user join is one data-modifying statement (`JOIN_ONE` in src/store/postgres.rs),
-- an autocommit transaction of its own. Like every join it inserts the member row first and
-- then counts it against the user's group limit and the group's member limit with
-- conditional updates (the lock order of the module docs). The statement checks both limits
-- against its snapshot before inserting, so a join refused for a limit normally writes
-- nothing; but when a concurrent join takes the last place after that snapshot, the
-- conditional update finds no room after the member row is written, and only an error can
-- undo the statement. It calls this function, which raises `code`: `JR001` (the group is
-- full) or `JR002` (the user is at their group limit); the store maps both back to its
-- errors. Nothing else calls it.
CREATE FUNCTION groups.refuse_join(code text, refusal text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = 'join refused: ' || refusal;
END
$$;
