DROP INDEX queue_messages_state;
DROP TABLE queue_messages;
