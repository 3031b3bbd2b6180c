-- Webhook receivers were labelled with their URL's path ("webhook https://host/path"),
-- where services such as Discord, Mattermost and Teams put their token. Labels are now
-- the origin only ("webhook https://host/… (notify[1])"); rows written before are
-- rewritten the same way, so no stored, shown or returned label keeps a path.
UPDATE notifications
SET label = 'webhook '
  || substr(substr(label, 9), 1, instr(substr(label, 9), '://') + 1 + instr(substr(substr(label, 9), instr(substr(label, 9), '://') + 3), '/'))
  || CASE WHEN substr(substr(substr(label, 9), instr(substr(label, 9), '://') + 3), instr(substr(substr(label, 9), instr(substr(label, 9), '://') + 3), '/')) = '/' THEN '' ELSE '/…' END
  || ' (notify[' || target || '])'
WHERE channel = 'webhook' AND label LIKE 'webhook %://%/%' AND label NOT LIKE '% (notify[%])';
