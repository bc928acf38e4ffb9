-- worldsim's bridge between the game and envs/minetest_env.py (files in the world folder).
--
-- Every server step it writes worldsim_state.txt: the last command done, the player's pose
-- and the controls the game saw. Commands come in worldsim_cmd.txt as "SEQ VERB ARGS...":
--   SEQ reset X Z YAW PITCH: undo every dug or placed node, remove dropped items, refill the
--       inventory, stand the player on the ground at (X, Z) facing YAW/PITCH (degrees);
--       fails ("bad") where the ground is water or missing, so the env draws another start.
--   SEQ pose X Y Z YAW PITCH: teleport to exactly that pose.
-- Python polls the state until its "done" field reaches SEQ.

local worldpath = minetest.get_worldpath()
local state_path = worldpath .. "/worldsim_state.txt"
local cmd_path = worldpath .. "/worldsim_cmd.txt"

local last_seq = -1
local done_seq = -1
local result = "ok"
local changed = {} -- hash -> {pos, node}: the world before the episode, for reset
local ticks = 0

local INVENTORY = {
	"default:pick_steel", "default:shovel_steel", "default:axe_steel", "default:dirt 99",
	"default:cobble 99", "default:wood 99", "default:glass 99", "default:torch 99",
}

local function remember(pos, node)
	local h = minetest.hash_node_position(pos)
	if changed[h] == nil then
		changed[h] = {pos = vector.new(pos), node = {name = node.name, param1 = node.param1, param2 = node.param2}}
	end
end
minetest.register_on_dignode(function(pos, oldnode) remember(pos, oldnode) end)
minetest.register_on_placenode(function(pos, newnode, placer, oldnode) remember(pos, oldnode) end)

local function the_player()
	return minetest.get_connected_players()[1]
end

local function set_up(player)
	player:hud_set_flags({hotbar = false, healthbar = false, crosshair = false, wielditem = false,
		breathbar = false, minimap = false, minimap_radar = false})
	player:hud_set_hotbar_itemcount(9)
	player:set_clouds({density = 0})
	-- A plain sky: the regular one follows a slowly adapting brightness, so a frame would
	-- depend on where the player looked seconds before.
	player:set_sky({type = "plain", base_color = "#8cb4f0", clouds = false})
	minetest.set_timeofday(0.5)
end
minetest.register_on_joinplayer(set_up)

local function restore_world()
	for _, entry in pairs(changed) do
		minetest.set_node(entry.pos, entry.node)
	end
	changed = {}
end

local function refill(player)
	local inv = player:get_inventory()
	inv:set_list("main", {})
	for _, item in ipairs(INVENTORY) do
		inv:add_item("main", item)
	end
	player:set_hp(player:get_properties().hp_max or 20)
	player:set_breath(player:get_properties().breath_max or 10)
end

local function ground(x, z)
	-- the top walkable node with two free nodes above it; nil where water or nothing is on top
	for y = 80, -40, -1 do
		local node = minetest.get_node({x = x, y = y, z = z})
		local def = minetest.registered_nodes[node.name]
		if node.name == "ignore" then
			return nil
		end
		if def and def.liquidtype ~= "none" then
			return nil
		end
		if def and def.walkable then
			return y
		end
	end
	return nil
end

local function place(player, pos, yaw, pitch)
	player:set_pos(pos)
	player:set_look_horizontal(math.rad(yaw))
	player:set_look_vertical(math.rad(pitch))
	local v = player:get_velocity()
	player:add_velocity(vector.multiply(v, -1))
end

local function reset(seq, player, x, z, yaw, pitch)
	restore_world()
	for _, obj in ipairs(minetest.get_objects_inside_radius(player:get_pos(), 200)) do
		if not obj:is_player() then
			obj:remove()
		end
	end
	local lo, hi = {x = x - 16, y = -48, z = z - 16}, {x = x + 16, y = 96, z = z + 16}
	minetest.emerge_area(lo, hi, function(_, _, remaining)
		if remaining > 0 then
			return
		end
		local y = ground(x, z)
		if y == nil then
			result = "bad"
		else
			refill(player)
			place(player, {x = x, y = y + 0.5, z = z}, yaw, pitch)
			result = "ok"
		end
		done_seq = seq
	end)
end

local function run(line)
	local words = {}
	for w in line:gmatch("%S+") do
		words[#words + 1] = w
	end
	local seq = tonumber(words[1])
	if seq == nil or seq <= last_seq then
		return
	end
	last_seq = seq
	local player = the_player()
	if player == nil then
		last_seq = seq - 1 -- try again once the player has joined
		return
	end
	local n = {}
	for i = 3, #words do
		n[#n + 1] = tonumber(words[i])
	end
	if words[2] == "reset" then
		reset(seq, player, n[1], n[2], n[3], n[4])
	elseif words[2] == "pose" then
		place(player, {x = n[1], y = n[2], z = n[3]}, n[4], n[5])
		result, done_seq = "ok", seq
	else
		result, done_seq = "unknown", seq
	end
end

local CONTROLS = {"up", "down", "left", "right", "jump", "aux1", "sneak", "dig", "place", "zoom"}

minetest.register_globalstep(function()
	ticks = ticks + 1
	local f = io.open(cmd_path, "r")
	if f then
		local line = f:read("*l")
		f:close()
		if line then
			run(line)
		end
	end
	local player = the_player()
	if player == nil then
		return
	end
	local pos = player:get_pos()
	local ctrl = player:get_player_control()
	local bits = {}
	for i, name in ipairs(CONTROLS) do
		bits[i] = ctrl[name] and "1" or "0"
	end
	local out = io.open(state_path .. ".tmp", "w")
	out:write(string.format("%d %s %d %.4f %.4f %.4f %.4f %.4f %s %d end\n", done_seq, result,
		ticks, pos.x, pos.y, pos.z, math.deg(player:get_look_horizontal()),
		math.deg(player:get_look_vertical()), table.concat(bits), player:get_wield_index()))
	out:close()
	os.rename(state_path .. ".tmp", state_path)
end)

-- Still liquids: animated water and lava would make a frame depend on the time, not the pose.
for name, texture in pairs({
	["default:water_source"] = "default_water.png", ["default:water_flowing"] = "default_water.png",
	["default:river_water_source"] = "default_river_water.png",
	["default:river_water_flowing"] = "default_river_water.png",
	["default:lava_source"] = "default_lava.png", ["default:lava_flowing"] = "default_lava.png",
}) do
	if minetest.registered_nodes[name] then
		local tile = {name = texture, backface_culling = false}
		minetest.override_item(name, {tiles = {tile}, special_tiles = {tile, tile}})
	end
end
